"""What every request passes before the API sees it (notebook 07).

- Host: only this computer's names (and those the server was told to serve)
  are answered, so a web page cannot reach a loopback server through a
  domain that points at 127.0.0.1 (DNS rebinding).
- Origin: web pages may call only from this computer.
- Body: at most `max_body` bytes (HTTP 413), read here so that no handler
  waits on a slow or huge upload, and text that cannot be UTF-8 (a lone
  surrogate such as "\\ud800") is refused with HTTP 400.
- Content type: Ollama's examples send JSON with `curl -d` (no JSON type).

>>> app.add_middleware(RequestGuard, max_body=10_000_000, hosts={"192.168.1.20"})
"""
from __future__ import annotations

import ipaddress
import json
import re

MAX_BODY = 10_000_000  # bytes: a long document fits, a runaway upload does not
LOCAL_NAMES = {"127.0.0.1", "localhost", "::1"}
_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")  # how JSON writes one


OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                404: "invalid_request_error", 413: "invalid_request_error",
                503: "server_busy"}
OPENAI_CODES = {401: "invalid_api_key", 404: "model_not_found", 503: "server_busy"}


def error_body(path: str, status: int, message: str) -> dict:
    """The error shape each API's clients expect: OpenAI's under /v1, else Ollama's."""
    if path.startswith("/v1"):
        return {"error": {"message": message,
                          "type": OPENAI_TYPES.get(status, "server_error"),
                          "param": None, "code": OPENAI_CODES.get(status)}}
    return {"error": message}


def local_origin(origin: str) -> bool:
    """True for web pages served from this computer (http://localhost:8888...)."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(origin).hostname in LOCAL_NAMES
    except ValueError:
        return False


def host_name(host: str) -> str:
    """The name in a Host header, without its port: '[::1]:8000' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host: str, extra=()) -> bool:
    """Loopback names and addresses, plus the `extra` names a server serves."""
    name = host_name(host).rstrip(".")
    if name in LOCAL_NAMES or name in extra:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def bad_text(body: bytes) -> bool:
    """True if the JSON body holds a string that cannot be UTF-8 (a lone surrogate)."""
    if not _SURROGATE.search(body):
        return False  # the usual case: no escaped surrogate at all
    try:
        todo = [json.loads(body)]
    except (ValueError, RecursionError):
        return False  # not JSON: the API says so itself
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False


async def refuse(send, path: str, status: int, message: str) -> None:
    body = json.dumps(error_body(path, status, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: the checks above, before any handler runs.

    Plain ASGI (not BaseHTTPMiddleware), so streamed answers and client
    disconnects pass through untouched.
    """

    def __init__(self, app, max_body: int = MAX_BODY, hosts=()):
        self.app, self.max_body = app, max_body
        self.hosts = {h.lower().strip("[]") for h in hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if host and not host_allowed(host, self.hosts):
            return await refuse(send, path, 403, (
                f"This server does not answer for the host name {host_name(host)!r}. "
                "Use http://127.0.0.1 on this computer; to serve other names, start "
                "it with --allow-host NAME."))
        origin = headers.get(b"origin", b"").decode("latin-1")
        if origin and not local_origin(origin):
            return await refuse(send, path, 403,
                                f"Requests from web pages at {origin} are refused.")
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            body = await self._body(headers, receive)
            if body is None:
                return await refuse(send, path, 413, (
                    f"The request is larger than this server accepts "
                    f"({self.max_body // 1_000_000} MB). Send less text, or start the "
                    "server with a larger --max-body."))
            if bad_text(body):
                return await refuse(send, path, 400, (
                    "The request holds text that is not valid Unicode (a lone "
                    "surrogate such as \\ud800). Send UTF-8 text."))
            if b"json" not in headers.get(b"content-type", b""):
                headers[b"content-type"] = b"application/json"
                scope = {**scope, "headers": list(headers.items())}
            receive = _replay(body, receive)
        return await self.app(scope, receive, send)

    async def _body(self, headers, receive) -> bytes | None:
        """The whole body, or None once it is larger than max_body."""
        try:
            if int(headers.get(b"content-length", b"0")) > self.max_body:
                return None
        except ValueError:
            pass
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client left: the handler finds out itself
            parts.append(message.get("body", b""))
            size += len(parts[-1])
            if size > self.max_body:
                return None
            if not message.get("more_body"):
                break
        return b"".join(parts)


def _replay(body: bytes, receive):
    """A receive() that gives the body read already, then the real messages."""
    sent = False

    async def again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
