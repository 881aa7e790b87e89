"""A second MCP server, for tests only (tests/test_mcp.py): a branch's rooms.

    python tests/mcp_test_server.py ok LOG          answers; reservations go to LOG
    python tests/mcp_test_server.py crash-start     writes to stderr and exits
    python tests/mcp_test_server.py hang-start      reads, never answers
    python tests/mcp_test_server.py garbage-start   answers the handshake with prose
    python tests/mcp_test_server.py garbage-call    a correct handshake and list, then
                                                   prose in reply to tools/call
    python tests/mcp_test_server.py bad-result      ... then a reply of the wrong shape
(in mode ok the tools hang_now and crash_now hang or exit mid-call)
"""
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

MODE = sys.argv[1] if len(sys.argv) > 1 else "ok"

if MODE == "crash-start":
    print("test server: cannot open its rooms database", file=sys.stderr, flush=True)
    sys.exit(3)
if MODE == "hang-start":
    for _line in sys.stdin:  # reads every request, answers none
        pass
    sys.exit(0)
if MODE == "garbage-start":
    sys.stdin.readline()
    sys.stdout.write("Hello! I am not an MCP server, I only say hello.\n")
    sys.stdout.flush()
    time.sleep(60)
    sys.exit(0)



def raw_server(reply_to_call: str) -> None:
    """JSON-RPC by hand: right until tools/call, then `reply_to_call`."""
    tool = {"name": "room_hours", "description": "Room hours.",
            "inputSchema": {"type": "object", "properties": {}},
            "annotations": {"readOnlyHint": True}}
    for line in sys.stdin:
        msg = json.loads(line)
        if "id" not in msg:
            continue  # a notification
        if msg["method"] == "initialize":
            result = {"protocolVersion": msg["params"]["protocolVersion"],
                      "capabilities": {"tools": {}},
                      "serverInfo": {"name": "raw", "version": "0"}}
        elif msg["method"] == "tools/list":
            result = {"tools": [tool]}
        elif msg["method"] == "tools/call":
            sys.stdout.write(reply_to_call.replace("ID", json.dumps(msg["id"])) + "\n")
            sys.stdout.flush()
            continue
        else:
            print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "error": {
                "code": -32601, "message": "Method not found"}}), flush=True)
            continue
        print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}),
              flush=True)


if MODE == "garbage-call":
    raw_server("Sorry, the rooms are closed today.")
    sys.exit(0)
if MODE == "bad-result":
    raw_server('{"jsonrpc": "2.0", "id": ID, "result": {"content": "not a list"}}')
    sys.exit(0)

from mcp.server.mcpserver import MCPServer  # noqa: E402
from mcp.types import ToolAnnotations  # noqa: E402
from pydantic import Field  # noqa: E402

LOG = Path(sys.argv[2]) if len(sys.argv) > 2 else None
app = MCPServer("rooms-test-server")


@app.tool(annotations=ToolAnnotations(readOnlyHint=True), structured_output=False)
def room_hours(room: Annotated[str, Field(description="the room, e.g. Garden Room")]
               ) -> str:
    """When a room of the Mill Street Branch can be booked."""
    return f"The {room} of the Mill Street Branch can be booked 10:00-16:00, code MS-{len(room)}."


@app.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False),
          structured_output=False)
def reserve_room(room: Annotated[str, Field(description="the room")],
                 date: Annotated[str, Field(description="YYYY-MM-DD")]) -> str:
    """Reserve a room for a date (changes the booking book)."""
    with open(LOG, "a", encoding="utf-8") as f:
        f.write(f"{room} {date}\n")
    return f"Reserved the {room} on {date}."


@app.tool(structured_output=False)
def unmarked(text: str) -> str:
    """A tool without annotations (a host must assume it may change things)."""
    return text


@app.tool(annotations=ToolAnnotations(readOnlyHint=True), structured_output=False)
def hang_now() -> str:
    """Never answers."""
    time.sleep(3600)
    return "late"


@app.tool(annotations=ToolAnnotations(readOnlyHint=True), structured_output=False)
def crash_now() -> str:
    """The server dies mid-call."""
    print("test server: out of memory (pretend)", file=sys.stderr, flush=True)
    os._exit(7)


if __name__ == "__main__":
    app.run()
