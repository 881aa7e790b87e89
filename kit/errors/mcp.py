"""Errors of tools over the Model Context Protocol: kit mcp serve, kit.tools.mcp_client (09, 11)."""
from __future__ import annotations

from kit.errors.base import KitError


class McpServerMissing(KitError):
    """The MCP server could not be started or reached at all."""

    def __init__(self, server: str, problem: str):
        super().__init__(
            f"The MCP server {server} could not be started or reached: {problem}. "
            "Check the command (is the program installed, and on PATH?) or the URL "
            "(is the server running?); for the kit's own server use "
            "kit.tools.mcp_client.kit_server_command()."
        )
        self.server, self.problem = server, problem


class McpServerFailed(KitError):
    """The MCP server crashed, hung, refused or sent something that is not MCP."""

    def __init__(self, server: str, problem: str, said: str = ""):
        tail = f" It wrote: {said}" if said else ""
        super().__init__(
            f"The MCP server {server} {problem}.{tail} Run the server's command "
            "by hand in a terminal to see its own messages, or raise the timeout "
            "if it is only slow; the agent loop shows this message to the model "
            "as the tool's result."
        )
        self.server, self.problem, self.said = server, problem, said

