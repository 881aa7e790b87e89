"""How many answers a served model gives at once (notebook 07).

A served llama.cpp model answers up to `parallel` requests together in one
batch (kit.engines.batch); the pool's first-come-first-served queue admits
them. The default comes from the memory budget: each sequence needs its own
KV cache (kit.fit's arithmetic), and the weights are shared.

>>> default_parallel(facts, n_ctx=2048, budget=4_000_000_000)
8
"""
from __future__ import annotations

import logging

from kit.fit import estimate

log = logging.getLogger("kit.server")

MAX_DEFAULT = 8  # beyond this a CPU gains little and each answer slows down


def kv_per_sequence(facts, n_ctx: int) -> int:
    """Bytes of KV cache one sequence of n_ctx tokens needs."""
    return estimate(facts, n_ctx).kv_cache


def bytes_for(facts, n_ctx: int, parallel: int) -> int:
    """Weights and overhead once, KV cache per sequence (and the model's own
    context, kept for what batching does not cover)."""
    one = estimate(facts, n_ctx)
    extra = parallel * one.kv_cache if parallel > 1 else 0
    return one.total + extra


def default_parallel(facts, n_ctx: int, budget: int, cap: int = MAX_DEFAULT) -> int:
    """The most sequences (up to `cap`) whose KV caches fit in half of what
    the budget leaves after one copy of the model: the rest stays for other
    models and contexts."""
    one = estimate(facts, n_ctx)
    room = (budget - one.total) // 2
    if one.kv_cache <= 0:
        return cap
    return max(1, min(cap, int(room // one.kv_cache)))


def batchable(model) -> bool:
    """A llama.cpp chat model (not an embedding model, not another engine)."""
    return getattr(model, "engine_name", "") == "llama.cpp" and \
        not getattr(model, "embedding", False) and hasattr(model, "llm")


def wrap(model, parallel: int):
    """The model answering `parallel` requests at once, or itself if it cannot."""
    if parallel <= 1 or not batchable(model):
        return model
    from kit.engines.batch import Batched

    log.info("%s answers up to %d requests at once (one batch, context %d each)",
             model.name, parallel, model.n_ctx)
    return Batched(model, parallel)


def close(model) -> None:
    """Free a batched model's shared context (nothing for a plain model)."""
    closer = getattr(type(model), "close", None)
    if closer is not None and hasattr(model, "runner"):
        model.close()
