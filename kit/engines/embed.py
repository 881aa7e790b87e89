"""Embeddings: texts in, one row of numbers per text out (notebook 08).

An embedding model (all-minilm:l6-v2) reads a whole text at once and
returns a fixed-length vector; texts that mean similar things point in
similar directions, so the dot product of two rows (they are normalised to
length 1) is their cosine similarity. The engines' `embed()` methods call
these functions: embed_llama for llama.cpp, embed_remote for a server's
OpenAI-style /v1/embeddings.

>>> model = kit.load("all-minilm:l6-v2")
>>> vectors = model.embed(["a library card", "borrowing books"])
>>> float(vectors[0] @ vectors[1])           # cosine similarity
0.52

A text longer than the model's context (512 tokens for MiniLM) is cut, and
the kit says so (a warning, and model.embed_stats.truncated); truncate=False
raises instead.
"""
from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass, field

from kit.errors import (BadParameter, EmbeddingTruncated, KitError, TextTooLongToEmbed,
                        TooMuchToEmbed)

# Architectures llama.cpp runs as encoders (embedding models, not chat).
ENCODER_ARCHS = {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2",
                 "jina-bert-v3", "modern-bert", "neo-bert", "t5encoder"}
PROGRESS_FROM = 64  # texts: from this many on, show a progress bar by default


@dataclass
class EmbedStats:
    """The figures of one embed() call."""

    texts: int = 0
    tokens: int = 0
    seconds: float = 0.0
    truncated: list = field(default_factory=list)  # (index, tokens before cut)

    def line(self) -> str:
        rate = self.texts / self.seconds if self.seconds > 0 else 0.0
        cut = f", {len(self.truncated)} truncated" if self.truncated else ""
        speed = f"{rate:.0f} texts/s" if rate >= 1 or not rate else f"{1 / rate:.1f} s a text"
        return (f"{self.texts} texts, {self.tokens} tokens in {self.seconds:.2f} s "
                f"({speed}){cut}")


def is_embedding_model(facts) -> bool:
    """Is this GGUF an embedding (encoder) model rather than a chat model?"""
    return (facts.architecture or "").lower() in ENCODER_ARCHS


def embedding_settings(facts, engine: str, n_ctx: int) -> tuple[bool, int]:
    """(embedding mode?, context) for loading this file with this engine.

    An encoder reads each text whole, so its context is at most the length
    it was trained for (512 tokens for MiniLM), not the chat default.
    """
    if not is_embedding_model(facts):
        return False, n_ctx
    if engine == "ctransformers":
        from kit.errors import EngineCannotRun

        raise EngineCannotRun(f"{facts.architecture} embedding models need the "
                              "llama.cpp engine")
    return True, min(n_ctx, facts.context_length or n_ctx)


def as_texts(texts) -> list[str]:
    """A string or a list of strings, checked."""
    if isinstance(texts, str):
        return [texts]
    try:
        texts = list(texts)
    except TypeError:
        raise BadParameter("texts", type(texts).__name__,
                           "a string or a list of strings") from None
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise BadParameter(f"texts[{bad[0]}]", type(texts[bad[0]]).__name__,
                           "a string (every item of the list)")
    return texts


def _bar(total: int, progress, desc: str):
    from tqdm.auto import tqdm

    show = total >= PROGRESS_FROM if progress is None else bool(progress)
    return tqdm(total=total, desc=desc, unit="text", disable=not show, leave=False)


def report_truncation(name: str, stats: EmbedStats, limit: int) -> None:
    """Say (as a warning) which texts were cut to fit the model's context."""
    if not stats.truncated:
        return
    first = ", ".join(f"#{i} ({n} tokens)" for i, n in stats.truncated[:5])
    more = f" and {len(stats.truncated) - 5} more" if len(stats.truncated) > 5 else ""
    warnings.warn(EmbeddingTruncated(
        f"{len(stats.truncated)} of {stats.texts} texts were longer than "
        f"{name}'s context of {limit} tokens and were cut to fit: {first}{more}. "
        "Only their beginning is in the vector: split long texts into chunks "
        "(kit.documents does), or pass truncate=False to get an error instead."),
        stacklevel=_outside_kit())


def _outside_kit() -> int:
    """The stack level of the first caller outside the kit, so a warning names
    the learner's line, not the kit's own."""
    import sys
    from pathlib import Path

    kit_dir, frame, level = str(Path(__file__).resolve().parents[1]), sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(kit_dir):
        frame, level = frame.f_back, level + 1
    return level


def _lock_of(engine) -> threading.Lock:
    """The engine's one llama.cpp context may run one embedding call at a time."""
    with _LOCKS_LOCK:
        return engine.__dict__.setdefault("_embed_lock", threading.Lock())


_LOCKS_LOCK = threading.Lock()


def embed_llama(engine, texts, *, batch_size: int | None = None, progress=None,
                truncate: bool = True, normalize: bool = True,
                max_tokens: int | None = None, stop=None):
    """Embed texts with a llama.cpp engine loaded in embedding mode.

    Texts are tokenized once, cut to the context if needed, and packed
    several to a batch (up to n_batch tokens), as llama.cpp's own
    embedding loop does; the rows come back in the order given. Calls from
    several threads take turns (they share one llama.cpp context).
    max_tokens: refuse (TooMuchToEmbed) more tokens than this in all;
    stop: a threading.Event; once set, the work ends (ClientGone) between
    batches (a server sets it when the client leaves).
    """
    with _lock_of(engine):
        return _embed_llama(engine, texts, batch_size=batch_size, progress=progress,
                            truncate=truncate, normalize=normalize,
                            max_tokens=max_tokens, stop=stop)


def _stopped(stop) -> None:
    if stop is not None and stop.is_set():
        from kit.errors import ClientGone

        raise ClientGone()


def _embed_llama(engine, texts, *, batch_size, progress, truncate, normalize,
                 max_tokens, stop):
    import numpy as np

    import llama_cpp
    texts = as_texts(texts)
    llm = engine.llm
    n_embd = llm.n_embd()
    limit = min(engine.n_ctx, llm.n_batch)
    n_seq = min(batch_size or 10**9, llm.context_params.n_seq_max)
    if n_seq < 1:
        raise BadParameter("batch_size", batch_size, "1 or more texts per batch")
    if llm.pooling_type() == llama_cpp.LLAMA_POOLING_TYPE_NONE:
        raise KitError(f"{engine.name} gives one vector per token, not per text "
                       "(no pooling in the file); the kit needs a pooled model.")
    stats = EmbedStats(texts=len(texts))
    t0 = time.perf_counter()
    tokens = []
    for i, text in enumerate(texts):
        if i % 64 == 0:
            _stopped(stop)
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        if len(ids) > limit:
            if not truncate:
                raise TextTooLongToEmbed(i, len(ids), limit, engine.name)
            stats.truncated.append((i, len(ids)))
            ids = ids[:limit - 1] + ids[-1:]  # keep the closing [SEP]
        tokens.append(ids)
        stats.tokens += len(ids)
        if max_tokens is not None and stats.tokens > max_tokens:
            raise TooMuchToEmbed(len(texts), max_tokens, i)
    out = np.empty((len(texts), n_embd), dtype=np.float32)
    # llama.cpp's C functions, as llama-cpp-python exports them (public API)
    batch = llama_cpp.llama_batch_init(llm.n_batch, 0, 1)
    try:
        with _bar(len(texts), progress, f"Embedding with {engine.name}") as bar:
            start = 0
            while start < len(texts):
                _stopped(stop)
                end, used = start, 0
                while end < len(texts) and end - start < n_seq and \
                        used + len(tokens[end]) <= llm.n_batch:
                    used += len(tokens[end])
                    end += 1
                _decode(llm.ctx, batch, tokens[start:end])
                for seq in range(end - start):
                    ptr = llama_cpp.llama_get_embeddings_seq(llm.ctx, seq)
                    out[start + seq] = np.ctypeslib.as_array(ptr, shape=(n_embd,))
                bar.update(end - start)
                start = end
    finally:
        llama_cpp.llama_batch_free(batch)
        llm.reset()
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    stats.seconds = time.perf_counter() - t0
    engine.embed_stats = stats
    report_truncation(engine.name, stats, limit)
    return out


def _decode(ctx, batch, sequences) -> None:
    """Run the encoder over several texts at once: one sequence id each."""
    import llama_cpp

    n = 0
    for seq, ids in enumerate(sequences):
        for pos, token in enumerate(ids):
            batch.token[n], batch.pos[n] = token, pos
            batch.n_seq_id[n], batch.seq_id[n][0] = 1, seq
            batch.logits[n] = True  # embedding mode: every token is an output
            n += 1
    batch.n_tokens = n
    memory = llama_cpp.llama_get_memory(ctx)
    if memory:  # an encoder may keep no memory between calls
        llama_cpp.llama_memory_clear(memory, True)
    if llama_cpp.llama_decode(ctx, batch) != 0:
        raise KitError("llama.cpp could not compute the embeddings (llama_decode "
                       "failed); try fewer texts at once (batch_size=...).")


def embed_remote(engine, texts, *, batch_size: int | None = None, progress=None,
                 truncate: bool = True, normalize: bool = True):
    """Embed texts through a server's POST /v1/embeddings (OpenAI's API)."""
    import httpx
    import numpy as np

    texts = as_texts(texts)
    size = batch_size or 64
    stats = EmbedStats(texts=len(texts))
    t0 = time.perf_counter()
    rows = []
    with _bar(len(texts), progress, f"Embedding with {engine.name}") as bar:
        for start in range(0, len(texts), size):
            part = texts[start:start + size]
            try:
                answer = engine._client.post("/v1/embeddings", json={
                    "model": engine.name, "input": part, "encoding_format": "float"})
            except httpx.HTTPError as exc:
                raise engine._fail(exc) from exc
            if answer.status_code in (400, 404, 422):
                raise KitError(f"The server at {engine.base_url} would not embed "
                               f"with {engine.name}: {_message(answer)}")
            if answer.status_code >= 400:
                raise engine._bad(f"POST /v1/embeddings gave HTTP {answer.status_code}"
                                  f": {answer.text[:200]!r}")
            try:
                data = sorted(answer.json()["data"], key=lambda d: d["index"])
                rows += [d["embedding"] for d in data]
                usage = answer.json().get("usage") or {}
            except (ValueError, KeyError, TypeError):
                raise engine._bad("POST /v1/embeddings gave no 'data' list of "
                                  "embeddings") from None
            if len(data) != len(part):
                raise engine._bad(f"asked for {len(part)} embeddings, got {len(data)}")
            stats.tokens += int(usage.get("prompt_tokens") or 0)
            bar.update(len(part))
    out = np.asarray(rows, dtype=np.float32).reshape(len(texts), -1) if rows \
        else np.zeros((0, 0), dtype=np.float32)  # nothing asked, no width known
    if normalize:
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    stats.seconds = time.perf_counter() - t0
    engine.embed_stats = stats
    return out


def _message(answer) -> str:
    """The error message in an OpenAI- or Ollama-shaped error body."""
    try:
        err = answer.json().get("error")
    except ValueError:
        return answer.text[:200]
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err or answer.text[:200])
