"""The web application: both APIs on one FastAPI app, errors, the API key.

>>> app = create_app(ModelPool(["smollm2:135m"]), api_key=None)
>>> # uvicorn.run(app, host="127.0.0.1", port=8000)  (kit.server.serve does this)
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math

from fastapi import Request  # at module level: route signatures name it

from kit.errors import KitError, ServerBusy
from kit.server.guard import MAX_BODY, RequestGuard, Throttle, error_body
from kit.server.models import BadRequest, ClientGone, ModelPool, error_status

log = logging.getLogger("kit.server")

def error_response(request, status: int, message: str, headers=None):
    from fastapi.responses import JSONResponse

    return JSONResponse(error_body(request.url.path, status, message),
                        status_code=status, headers=headers)


def describe_validation(errors) -> str:
    """FastAPI's validation errors as one readable line."""
    parts = []
    for e in errors[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "Malformed request: " + "; ".join(parts) + more


class RequireKey:
    """ASGI middleware: every request must carry `Authorization: Bearer KEY`.

    Written as plain ASGI (not BaseHTTPMiddleware) so that streaming answers
    and client disconnects pass through untouched. The key is never logged.
    Repeated wrong keys from one address are slowed down (HTTP 429 with
    Retry-After, kit.server.guard.Throttle); a key that worked from there
    before still passes.
    """

    def __init__(self, app, api_key: str | None, ring=None, throttle=None):
        self.app, self._key = app, (api_key or "").encode("utf-8")
        self.ring = ring  # kit.server.keys.KeyRing: a key per learner or table
        self.throttle = throttle or Throttle()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"")
        given = auth[7:].strip() if auth[:7].lower() == b"bearer " else b""
        address = (scope.get("client") or ("?",))[0]
        token = hashlib.sha256(given).hexdigest()
        wait = self.throttle.retry_after(address)
        if wait and not self.throttle.trusted(address, token):
            return await _too_many(send, scope.get("path", ""), wait)
        if given and self._key and hmac.compare_digest(given, self._key):
            self.throttle.trust(address, token)
            return await self.app(scope, receive, send)
        entry = self.ring.check(given.decode("utf-8", "replace")) \
            if given and self.ring is not None else None
        if entry is not None:  # the pool counts its use and checks its models
            self.throttle.trust(address, token)
            scope.setdefault("state", {})["kit_key"] = entry
            return await self.app(scope, receive, send)
        if given:  # a wrong key (none at all is a mistake, not a guess)
            wait = self.throttle.failed(address)
            if wait:
                log.warning("%s sent wrong API keys again and again: refused for "
                            "%.0f s", address, wait)
                return await _too_many(send, scope.get("path", ""), wait)
        message = ("Missing or wrong API key. Send the header 'Authorization: "
                   "Bearer KEY' (OpenAI clients: api_key=KEY; Ollama clients: "
                   "headers={'Authorization': 'Bearer KEY'}); ask the person "
                   "running the server for the key.")
        body = json.dumps(error_body(scope.get("path", ""), 401, message)).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})


async def _too_many(send, path: str, wait: float) -> None:
    seconds = max(1, math.ceil(wait))
    message = (f"Too many wrong API keys from this address: try again in {seconds} s, "
               "with the key the person running the server gave you.")
    body = json.dumps(error_body(path, 429, message)).encode()
    await send({"type": "http.response.start", "status": 429,
                "headers": [(b"content-type", b"application/json"),
                            (b"retry-after", str(seconds).encode())]})
    await send({"type": "http.response.body", "body": body})


def route_paths(routes):
    """Every route's path, included routers' too."""
    for route in routes:
        if isinstance(getattr(route, "path", None), str):
            yield route.path
        inner = getattr(route, "original_router", None)  # FastAPI's included router
        if inner is not None:
            yield from route_paths(inner.routes)


def unsupported_route(request, why: str) -> str:
    """A 404/405 that names the routes this server offers under the same API."""
    path = request.url.path
    prefix = "/" + path.strip("/").split("/")[0]
    offered = sorted(p for p in set(route_paths(request.app.routes))
                     if p.startswith(prefix + "/"))
    api = {"/api": "Ollama", "/v1": "OpenAI"}.get(prefix)
    if not api:
        return f"{why}: {path}. This is a kit server: its APIs are under /v1 and /api."
    message = (f"{request.method} {path} is not offered by this kit server ({why}). "
               f"Its {api} routes: {', '.join(offered)}.")
    if api == "Ollama":
        message += (" Models come from the kit's catalogue (/api/pull, or `kit pull` "
                    "on the server's computer); this server pushes none.")
    return message


def create_app(pool: ModelPool, api_key: str | None = None, on_ready=None,
               max_body: int = MAX_BODY, hosts=(), ring=None):
    """The FastAPI app serving `pool` (OpenAI API under /v1, Ollama's under /api).

    max_body: the largest request in bytes; hosts: names besides this
    computer's own that the server answers for (kit.server.guard); ring: the
    room's keys (kit.server.keys.KeyRing), each as good as api_key.
    """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse, Response
    from starlette.exceptions import HTTPException

    from kit import __version__
    from kit.engines.llamacpp import import_llama_cpp

    import_llama_cpp()  # the kit's one way in: OpenMP's settings before openai_api loads it
    from kit.server import embed_api, manage_api, ollama_api, openai_api, responses_api

    @asynccontextmanager
    async def lifespan(app):
        from kit.server.keepalive import reaper

        if on_ready is not None:
            on_ready()
        task = asyncio.create_task(reaper(pool))  # keep_alive's unloading
        yield
        task.cancel()

    app = FastAPI(title="kit server", version=__version__, lifespan=lifespan,
                  description="An OpenAI- and Ollama-compatible API for local "
                  "models, served by the local LLM workshop kit.")
    app.state.pool = pool

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        return error_response(request, 400, describe_validation(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        message = str(exc.detail)
        if message in ("Not Found", "Method Not Allowed"):  # say what there is
            message = unsupported_route(request, message)
        return error_response(request, exc.status_code, message)

    @app.exception_handler(KitError)
    async def kit_error(request: Request, exc: KitError):
        headers = ({"Retry-After": str(exc.retry_after)}
                   if isinstance(exc, ServerBusy) else None)
        return error_response(request, error_status(exc), str(exc), headers)

    @app.exception_handler(BadRequest)
    async def refused(request: Request, exc: BadRequest):
        return error_response(request, 400, str(exc))

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone):
        return Response(status_code=499)  # nobody is listening any more

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("Unexpected error while serving %s", request.url.path)
        return error_response(request, 500, f"Internal error: {type(exc).__name__}: "
                              f"{exc}. The server log has the details.")

    @app.get("/", response_class=PlainTextResponse)
    @app.head("/", response_class=PlainTextResponse)
    async def root():
        return "kit server is running"

    @app.get("/kit/status")
    async def status(request: Request):
        from kit.server.keys import scoped_status
        from kit.server.models import room_key_of

        # a room key sees its own use and models; the server's key sees all
        return JSONResponse(scoped_status(pool.status(), room_key_of(request)))

    app.include_router(openai_api.router)
    app.include_router(openai_api.extras)
    app.include_router(ollama_api.router)
    app.include_router(embed_api.openai_router)
    app.include_router(embed_api.ollama_router)
    app.include_router(responses_api.router)  # OpenAI's Responses API
    app.include_router(manage_api.router)  # Ollama's pull, create, copy, delete
    app.add_middleware(RequestGuard, max_body=max_body, hosts=hosts)
    if api_key or ring is not None:  # added last, so it runs first
        app.add_middleware(RequireKey, api_key=api_key, ring=ring)
    return app
