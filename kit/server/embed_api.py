"""Embeddings over HTTP: OpenAI's /v1/embeddings, Ollama's /api/embed and /api/embeddings.

Each request waits its turn for the model (one llama.cpp context, one user at
a time), like a generation. A chat model answers with HTTP 400 and says which
model to use instead. Texts too long for the model: /v1/embeddings refuses
them (as OpenAI does); /api/embed cuts them unless "truncate": false (as
Ollama does), and says so in the server log. /api/embeddings, Ollama's older
route, returns the raw vector (not normalised), as Ollama does.

>>> from openai import OpenAI
>>> client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
>>> client.embeddings.create(model="all-minilm:l6-v2", input=["a", "b"])
>>> import ollama; ollama.Client("http://127.0.0.1:8000").embed("all-minilm", "a")
"""
from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from typing import Literal, Optional, Union

from fastapi import APIRouter, Request
from pydantic import BaseModel

from kit.errors import ClientGone, ServerBusy
from kit.server.models import BadRequest, until_disconnect

log = logging.getLogger("kit.server")
openai_router = APIRouter(prefix="/v1")
ollama_router = APIRouter(prefix="/api")

# Caps on one request. OpenAI's embeddings API takes 2,048 inputs; its
# 300,000 tokens would keep a laptop busy for minutes (MiniLM read 300
# tokens a second on one thread of a busy 2-core machine), so a third of it:
# a client with more sends several requests, and others get their turns.
MAX_INPUTS = 2048
MAX_TOKENS = 100_000


class OpenAIEmbeddingRequest(BaseModel):
    model: Optional[str] = None
    input: Union[str, list[str], list[int], list[list[int]]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Optional[int] = None
    user: Optional[str] = None


class OllamaEmbedRequest(BaseModel):
    model: str
    input: Union[str, list[str]]
    truncate: bool = True
    options: Optional[dict] = None
    keep_alive: Union[str, float, int, None] = None
    dimensions: Optional[int] = None


class OllamaEmbeddingsRequest(BaseModel):
    model: str
    prompt: str = ""
    options: Optional[dict] = None
    keep_alive: Union[str, float, int, None] = None


def _texts(value) -> list[str]:
    texts = [value] if isinstance(value, str) else list(value)
    if not texts:
        raise BadRequest("'input' is empty: send a text or a list of texts.")
    if not all(isinstance(t, str) for t in texts):
        raise BadRequest("This server embeds text only: send 'input' as a string "
                         "or a list of strings, not token ids.")
    return texts


async def embed(request: Request, name: str | None, texts: list[str], **options):
    """(name, vectors, tokens, load seconds): the model's embed() in its turn.

    The model's queue is the one generations use; an encoder's slot admits
    one request at a time (its one llama.cpp context). A client that leaves
    stops the work between batches, and the next request waits until it has.
    """
    pool = request.app.state.pool
    name = pool.canonical(name, request)
    if len(texts) > MAX_INPUTS:
        raise BadRequest(f"{len(texts):,} texts in one request: this server embeds "
                         f"at most {MAX_INPUTS:,} per request (its cap on inputs). "
                         "Send them in several requests.")
    slot = pool.slot(name)
    pool.counters["requests"] += 1
    if slot.lock.locked() and slot.waiting >= pool.max_queue:
        pool.counters["refused"] += 1
        raise ServerBusy(name, slot.waiting, retry_after=max(1, slot.waiting))
    slot.waiting += 1
    try:
        await until_disconnect(request, slot.lock.acquire(), undo=slot.lock.release)
    finally:
        slot.waiting -= 1
    slot.active += 1  # busy: neither the memory budget nor keep_alive unloads it
    try:
        model, load_s = await pool.ensure(request, name)
        vectors = await _run(request, pool, name, model, texts, options)
        stats = getattr(model, "embed_stats", None)  # ours: the next request waits
        pool.counters["completed"] += 1
    finally:
        slot.active -= 1
        slot.idle_since = time.time()
        slot.lock.release()
    if stats is not None and stats.truncated:
        log.warning("%s: %s", name, stats.line())
    return name, vectors, (stats.tokens if stats else 0), load_s


async def _run(request, pool, name, model, texts, options):
    """model.embed in a thread; stopped (ClientGone) if the client leaves."""
    stop = threading.Event()
    work = asyncio.ensure_future(asyncio.to_thread(
        model.embed, texts, progress=False, max_tokens=MAX_TOKENS, stop=stop, **options))
    try:
        return await until_disconnect(request, asyncio.shield(work))
    except ClientGone:
        stop.set()
        try:  # the context is free for the next request only once the thread is out
            await work
        except BaseException:
            pass
        pool.counters["cancelled"] += 1
        log.info("Cancelled embedding %d texts with %s (the client went away)",
                 len(texts), name)
        raise


def _reduce(vectors, dimensions: int | None):
    """The first `dimensions` numbers of each vector, normalised again."""
    import numpy as np

    if dimensions is None:
        return vectors
    if not 1 <= dimensions <= vectors.shape[1]:
        raise BadRequest(f"'dimensions' must be from 1 to {vectors.shape[1]} for "
                         "this model.")
    cut = vectors[:, :dimensions]
    return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)


@openai_router.post("/embeddings")
async def openai_embeddings(body: OpenAIEmbeddingRequest, request: Request):
    texts = _texts(body.input)
    name, vectors, tokens, _ = await embed(request, body.model, texts, truncate=False)
    vectors = _reduce(vectors, body.dimensions)

    def encode(row):
        if body.encoding_format == "base64":  # float32, little-endian, as OpenAI
            return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
        return row.tolist()

    return {"object": "list", "model": name,
            "data": [{"object": "embedding", "index": i, "embedding": encode(row)}
                     for i, row in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@ollama_router.post("/embed")
async def ollama_embed(body: OllamaEmbedRequest, request: Request):
    t0 = time.perf_counter()
    name, vectors, tokens, load_s = await embed(request, body.model, _texts(body.input),
                                                truncate=body.truncate)
    vectors = _reduce(vectors, body.dimensions)
    return {"model": name, "embeddings": vectors.tolist(),
            "total_duration": int((time.perf_counter() - t0) * 1e9),
            "load_duration": int(load_s * 1e9), "prompt_eval_count": tokens}


@ollama_router.post("/embeddings")
async def ollama_embeddings(body: OllamaEmbeddingsRequest, request: Request):
    _, vectors, _, _ = await embed(request, body.model, [body.prompt], truncate=True,
                                   normalize=False)
    return {"embedding": vectors[0].tolist()}
