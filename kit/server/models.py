"""The server's models: loaded on first use, kept within a memory budget, one
generation at a time per model with a fair (first come, first served) queue.

>>> pool = ModelPool(["smollm2:135m"])
>>> job = await pool.start(request, "smollm2", lambda m: m.chat(messages))
>>> async for kind, value in job: ...
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from kit.errors import (BadRequest, ClientGone, KitError, ModelNotAllowed,
                        ModelNotFound, ServerBusy)

log = logging.getLogger("kit.server")


def room_key_of(request):
    """The room key (kit.server.keys.RoomKey) a request came with, if any."""
    scope = getattr(request, "scope", None) or {}
    return (scope.get("state") or {}).get("kit_key")


def needs_schema_support(model, schema) -> None:
    """Refuse a JSON schema for an engine that cannot constrain its answers."""
    if schema is not None and not model.capabilities.get("json_schema"):
        raise BadRequest(f"The {model.engine_name} engine serving {model.name!r} "
                         "cannot follow a JSON schema; serve a llama.cpp model "
                         "for structured output.")


@dataclass
class Slot:
    """One loaded (or loadable) model: its lock is the queue of requests."""

    name: str
    path: str
    n_ctx: int
    bytes_needed: int = 0
    model: object = None
    load_s: float = 0.0
    waiting: int = 0
    parallel: int = 1  # answers at once (kit.server.batch); the lock admits them
    active: int = 0
    keep_s: float | None = None  # keep_alive (kit.server.keepalive); None: keep
    idle_since: float = field(default_factory=time.time)
    lock: asyncio.Semaphore = None
    loading: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self):
        if self.lock is None:  # first come, first served, `parallel` at a time
            self.lock = asyncio.Semaphore(self.parallel)

    @property
    def busy(self) -> bool:
        return self.active > 0

    @property
    def threads(self) -> int | None:
        """llama.cpp threads in use now (fewer while other programs are busy)."""
        runner = getattr(self.model, "runner", None)  # batched: its own context
        gov = getattr(runner, "governor", None) or getattr(self.model, "governor", None)
        return gov.threads if gov is not None else getattr(self.model, "n_threads", None)


class Job:
    """One generation running in a worker thread, read from async code.

    Iterate it (async) for ("piece", text) events, then one ("end", stats) or
    ("error", exception). `cancel()` stops the generation within a token.
    """

    def __init__(self, stream, slot: Slot, on_done, loaded_s: float = 0.0):
        self.stream, self.slot, self.load_s = stream, slot, loaded_s
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        self._on_done, self._over = on_done, False
        self.ended = self.left_early = False  # the work is over; the client left first
        self.thread = threading.Thread(target=self._work, daemon=True,
                                       name=f"kit-gen-{slot.name}")
        self.thread.start()

    def _put(self, event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the server is shutting down: nobody listens
            self.stream.cancel()

    def _work(self) -> None:
        last = ("error", RuntimeError("the generation ended unexpectedly"))
        try:
            for piece in self.stream:
                self._put(("piece", piece))
            last = ("end", self.stream.stats)
        except Exception as exc:  # reported to the client as an error
            last = ("error", exc)
        finally:
            try:  # one callback: the model is free before anyone sees the end
                self.loop.call_soon_threadsafe(self._finish, last)
            except RuntimeError:
                pass

    def _finish(self, last) -> None:
        self.ended = True
        self._on_done(self)
        self.events.put_nowait(last)

    def cancel(self) -> None:
        # Before the end, a cancel means the client left: counted as cancelled
        # even where the engine's own stop reason says otherwise (a batch).
        self.left_early = self.left_early or not self.ended
        self.stream.cancel()

    async def next(self):
        return await self.events.get()

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._over:
            raise StopAsyncIteration
        event = await self.events.get()
        self._over = event[0] != "piece"
        return event


async def until_disconnect(request, awaitable, every: float = 0.2, undo=None):
    """Await `awaitable`, but give up (ClientGone) if the client goes away.

    `undo()` runs if we give up after all but the awaitable had succeeded
    (for a lock: release it, or it would stay held for ever).
    """
    task = asyncio.ensure_future(awaitable)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            if request is not None and await request.is_disconnected():
                raise ClientGone()
    except BaseException:
        if not task.done():
            task.cancel()
        elif undo is not None and not task.cancelled() and task.exception() is None:
            undo()
        raise


class ModelPool:
    """The models a server offers, and the ones it has loaded."""

    def __init__(self, models=None, *, n_ctx: int | None = None,
                 n_threads: int | None = None, memory_budget: int | None = None,
                 max_queue: int = 8, check_fit: bool = True,
                 parallel: int | None = None):
        from kit.settings import get_settings
        from kit.models.registry import installed, resolve

        cfg = get_settings()
        self.n_ctx = n_ctx or cfg.n_ctx
        self.n_threads = n_threads or cfg.n_threads
        self.max_queue, self.check_fit = max_queue, check_fit
        self.parallel = parallel  # None: from the memory budget, per model
        if memory_budget is None:
            import psutil

            memory_budget = int(psutil.virtual_memory().available * 0.7)
        self.memory_budget = memory_budget
        names = list(models or []) or list(installed()) or [cfg.default_model]
        self.offered: dict[str, str] = {}
        for name in names:  # an unknown name fails now, before the server starts
            ref = resolve(name)
            self.offered[ref.name] = str(ref.path)
        self.default = next(iter(self.offered))
        self.slots: OrderedDict[tuple, Slot] = OrderedDict()  # least recent first
        self.counters = dict(requests=0, completed=0, cancelled=0, refused=0,
                             errors=0, tokens=0)
        self.usage: dict[str, dict] = {}  # per room key (kit.server.keys)
        self.started = time.time()
        self._facts: dict = {}

    # -- names ------------------------------------------------------------
    def canonical(self, name: str | None, request=None) -> str:
        """The offered name for `name` ("smollm2", "smollm2:latest" work too);
        given a request, refused (403) if its room key may not use the model."""
        base = name[:-7] if name and name.endswith(":latest") else name
        matches = [n for n in self.offered if n == base or n.split(":")[0] == base]
        found = (self.default if not name else name if name in self.offered
                 else matches[0] if len(matches) == 1 else None)
        if found is None:
            raise ModelNotFound(name, list(self.offered))
        key = room_key_of(request)
        if key is not None and not key.allows(found):
            raise ModelNotAllowed(key.name, found, key.models)
        return found

    def facts(self, name: str):
        from kit.modelfile import read_facts

        if name not in self._facts:
            self._facts[name] = read_facts(self.offered[name])
        return self._facts[name]

    # -- slots, queue, memory ---------------------------------------------
    def slot(self, name: str, n_ctx: int | None = None) -> Slot:
        key = (name, n_ctx or self.n_ctx)
        if key not in self.slots:
            from kit.engines.embed import is_embedding_model
            from kit.server.batch import default_parallel

            facts = self.facts(name)  # an encoder has one context: one text batch at a time
            parallel = 1 if is_embedding_model(facts) else self.parallel or \
                default_parallel(facts, key[1], self.memory_budget)
            self.slots[key] = Slot(name, self.offered[name], key[1], parallel=parallel)
        return self.slots[key]

    def loaded(self, request=None) -> list[Slot]:
        """Loaded models (those the request's room key may use, given one)."""
        key = room_key_of(request)
        return [s for s in self.slots.values() if s.model is not None
                and (key is None or key.allows(s.name))]

    def _make_room(self, slot: Slot) -> None:
        """Unload least recently used idle models until `slot` fits the budget."""
        from kit.server.batch import bytes_for

        if not slot.bytes_needed:
            slot.bytes_needed = bytes_for(self.facts(slot.name), slot.n_ctx, slot.parallel)
        if slot.bytes_needed > self.memory_budget:  # refuse before unloading others
            self.slots.pop((slot.name, slot.n_ctx), None)
            raise BadRequest(
                f"{slot.name} with a context of {slot.n_ctx} tokens needs about "
                f"{slot.bytes_needed / 1e9:.1f} GB, more than this server's budget of "
                f"{self.memory_budget / 1e9:.1f} GB: ask for a smaller context "
                f"(num_ctx; the model was trained for "
                f"{self.facts(slot.name).context_length} tokens).")
        for other in list(self.slots.values()):  # least recently used first
            used = sum(s.bytes_needed for s in self.loaded())
            if used + slot.bytes_needed <= self.memory_budget:
                break
            if other is not slot and other.model is not None and not other.busy:
                self._unload(other)
                log.info("Unloaded %s (context %d) to stay within the memory "
                         "budget of %d MB", other.name, other.n_ctx,
                         self.memory_budget // 1_000_000)

    def _unload(self, slot: Slot) -> None:
        from kit.engines import unload
        from kit.server.batch import close

        model, slot.model = slot.model, None
        close(model)
        unload(getattr(model, "engine", model))

    def _load(self, slot: Slot):
        from kit.engines import load

        t0 = time.perf_counter()
        model = load(slot.path, n_ctx=slot.n_ctx, n_threads=self.n_threads,
                     check_fit=self.check_fit, quiet=True)
        model.name = slot.name  # the served name, not the file's stem
        from kit.server.batch import wrap

        model = wrap(model, slot.parallel)  # several answers in one batch
        return model, time.perf_counter() - t0

    async def start(self, request, name: str, make_stream, n_ctx: int | None = None) -> Job:
        """Wait for the model (in turn), load it if needed, start a generation.

        `make_stream(model)` returns the engine's Stream. Raises ServerBusy when
        the queue is full, ClientGone if the client leaves while waiting.
        """
        self.counters["requests"] += 1
        key = self._key_for(request, name)
        slot = self.slot(name, n_ctx)
        if not slot.lock.locked():  # a free place: take it now (no one waits)
            await slot.lock.acquire()
        elif slot.waiting >= self.max_queue:
            self.counters["refused"] += 1
            raise ServerBusy(name, slot.waiting, retry_after=max(1, slot.waiting))
        else:
            slot.waiting += 1
            try:
                await until_disconnect(request, slot.lock.acquire(),
                                       undo=slot.lock.release)
            finally:
                slot.waiting -= 1
        slot.active += 1
        try:
            self.slots.move_to_end((slot.name, slot.n_ctx))
            load_s = 0.0
            async with slot.loading:  # one load, however many were admitted
                if slot.model is None:
                    self._make_room(slot)
                    slot.model, load_s = await asyncio.to_thread(self._load, slot)
                    slot.load_s = load_s
                    log.info("Loaded %s (context %d) in %.2f s", name, slot.n_ctx,
                             load_s)
            # Templating, tokenizing and schemas can take a while: not on the loop.
            stream = await asyncio.to_thread(make_stream, slot.model)
        except BaseException:
            slot.active -= 1
            slot.lock.release()
            raise
        job = Job(stream, slot, self._finished, load_s)
        job.key_name = key.name if key is not None else None
        return job

    async def ensure(self, request, name: str, n_ctx: int | None = None):
        """(model, seconds spent loading it now): for requests that only read it."""
        self._key_for(request, name)
        slot = self.slot(name, n_ctx)
        if slot.model is not None:
            self.slots.move_to_end((slot.name, slot.n_ctx))
            return slot.model, 0.0
        await until_disconnect(request, slot.loading.acquire(), undo=slot.loading.release)
        try:
            load_s = 0.0
            if slot.model is None:
                self._make_room(slot)
                slot.model, load_s = await asyncio.to_thread(self._load, slot)
                log.info("Loaded %s (context %d) in %.2f s", name, slot.n_ctx, load_s)
            return slot.model, load_s
        finally:
            slot.loading.release()

    def _key_for(self, request, name: str):
        """The request's room key, if any: refused for a model outside its
        allow-list, else its use counted."""
        key = room_key_of(request)
        if key is not None:
            if not key.allows(name):
                raise ModelNotAllowed(key.name, name, key.models)
            self.usage.setdefault(key.name, dict(requests=0, tokens=0))["requests"] += 1
        return key

    def _finished(self, job: Job) -> None:
        st = job.stream.stats
        self.counters["tokens"] += st.generated_tokens
        if getattr(job, "key_name", None):
            self.usage[job.key_name]["tokens"] += st.generated_tokens
        if st.stop_reason == "cancelled" or job.left_early:
            self.counters["cancelled"] += 1
            log.info("Cancelled a generation of %s after %d tokens (the client "
                     "went away)", job.slot.name, st.generated_tokens)
        elif st.stop_reason:
            self.counters["completed"] += 1
        else:
            self.counters["errors"] += 1
        job.slot.active -= 1
        if not job.slot.active:
            job.slot.idle_since = time.time()
        job.slot.lock.release()

    def status(self) -> dict:
        """What the server holds and has done (for /kit/status)."""
        return {
            "models": list(self.offered),
            "loaded": [{"name": s.name, "n_ctx": s.n_ctx, "busy": s.busy,
                        "waiting": s.waiting, "bytes": s.bytes_needed,
                        "parallel": s.parallel, "answering": s.active,
                        "threads": s.threads}
                       for s in self.loaded()],
            "memory_budget": self.memory_budget,
            "max_queue": self.max_queue,
            "counters": dict(self.counters),
            "usage": {name: dict(u) for name, u in self.usage.items()},  # per key
            "uptime_s": round(time.time() - self.started, 1),
        }


def error_status(exc: BaseException) -> int:
    """The HTTP status for a kit error raised while serving a request."""
    from kit.errors import (BadModelFile, BadParameter, BadSchema, PromptTooLong,
                            WontFit)

    if isinstance(exc, ModelNotFound):
        return 404
    if isinstance(exc, ModelNotAllowed):
        return 403
    if isinstance(exc, (BadParameter, BadSchema, PromptTooLong, BadRequest)):
        return 400
    if isinstance(exc, (ServerBusy, WontFit)):
        return 503
    if isinstance(exc, BadModelFile):
        return 500
    return 400 if isinstance(exc, KitError) else 500
