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
                429: "requests", 503: "server_busy"}
OPENAI_CODES = {401: "invalid_api_key", 404: "model_not_found",
                429: "rate_limit_exceeded", 503: "server_busy"}


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


class Throttle:
    """Repeated failures from one address wait longer and longer (HTTP 429).

    The first `free` failures within `window` seconds cost nothing (typos);
    each one after that locks the address out for twice as long as the last
    (1 s, 2 s, 4 s ... up to `longest`). While an address is locked out, a
    caller refuses its attempts without checking them, so guessing gains
    nothing by going faster. `trust(address, token)` remembers what worked
    from an address (a key's hash), so a room whose learners share one
    address (a hub's kernels all come from 127.0.0.1) is not locked out by
    one learner's typos. Used for API keys here; a hub can use it for
    passwords (one Throttle per thing guessed).

    >>> t = Throttle(free=2); [t.failed("10.0.0.5") for _ in range(4)]
    [0.0, 0.0, 1.0, 2.0]
    """

    def __init__(self, free: int = 10, window: float = 300.0, longest: float = 60.0,
                 clock=None):
        import time

        self.free, self.window, self.longest = free, window, longest
        self.clock = clock or time.monotonic
        self._fails: dict[str, list[float]] = {}  # address: failure times
        self._until: dict[str, float] = {}  # address: locked out until
        self._trusted: dict[str, set] = {}

    def _recent(self, address: str, now: float) -> list[float]:
        times = [t for t in self._fails.get(address, ()) if now - t < self.window]
        if times:
            self._fails[address] = times
        else:
            self._fails.pop(address, None)
        return times

    def retry_after(self, address: str) -> float:
        """Seconds before `address` may try again (0: now)."""
        left = self._until.get(address, 0.0) - self.clock()
        if left <= 0:
            self._until.pop(address, None)
            return 0.0
        return left

    def failed(self, address: str) -> float:
        """Count a failure; the seconds `address` is now locked out (0: none)."""
        now = self.clock()
        times = self._recent(address, now) + [now]
        self._fails[address] = times
        if len(self._fails) > 10_000:  # many addresses: forget the quiet ones
            for quiet in [a for a in self._fails if not self._recent(a, now)]:
                self._fails.pop(quiet, None)
        over = len(times) - self.free
        if over <= 0:
            return 0.0
        wait = min(self.longest, 2.0 ** min(over - 1, 30))
        self._until[address] = now + wait
        return wait

    def trust(self, address: str, token: str) -> None:
        """`token` (a key's hash) worked from `address`: let it through a lockout."""
        known = self._trusted.setdefault(address, set())
        if len(known) < 1000:
            known.add(token)

    def trusted(self, address: str, token: str) -> bool:
        return token in self._trusted.get(address, ())
