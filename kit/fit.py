"""Will it fit? Memory a model needs: weights + KV cache + overhead, vs. RAM.

>>> est = estimate(read_facts(path), n_ctx=2048)
>>> print(est.explain())   # the arithmetic, line by line
"""
from __future__ import annotations

from dataclasses import dataclass

from kit.errors import BadParameter, WontFit
from kit.machine import nvidia_gpus

MB = 1_000_000
# What llama.cpp needs beyond weights and KV cache: compute buffers, the
# output logits and the Python process around it. Measured on the starter
# model at context 2048: loading grew the process by 180 MB (98 MB weights,
# 47 MB KV cache, about 35 MB of buffers) on top of about 50 MB of Python;
# 250 MB leaves room for a notebook kernel, plus 10% of the weights for
# larger models' bigger compute buffers.
OVERHEAD_FIXED = 250 * MB
OVERHEAD_SHARE = 0.10
KV_BYTES = 2  # llama.cpp stores K and V as 16-bit floats by default


@dataclass(frozen=True)
class FitEstimate:
    weights: int
    kv_cache: int
    overhead: int
    n_ctx: int
    gpu_share: float  # fraction of layers offloaded to the GPU
    ram_available: int | None = None
    vram_available: int | None = None

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    @property
    def vram_needed(self) -> int:
        return int((self.weights + self.kv_cache) * self.gpu_share)

    @property
    def ram_needed(self) -> int:
        return self.total - self.vram_needed

    @property
    def fits(self) -> bool:
        ram_ok = self.ram_available is None or self.ram_needed <= self.ram_available
        vram_ok = (self.vram_needed == 0 or self.vram_available is None
                   or self.vram_needed <= self.vram_available)
        return ram_ok and vram_ok

    def explain(self) -> str:
        """The arithmetic, in MB, as a learner would write it down."""
        mb = lambda n: f"{n / MB:,.0f} MB"  # noqa: E731
        lines = [
            f"weights {mb(self.weights)} + KV cache {mb(self.kv_cache)} "
            f"(context {self.n_ctx}) + overhead {mb(self.overhead)} "
            f"= {mb(self.total)}"
        ]
        if self.vram_needed:
            lines.append(f"of which on the GPU {mb(self.vram_needed)}, "
                         f"available {mb(self.vram_available or 0)}")
        if self.ram_available is not None:
            lines.append(f"needed in RAM {mb(self.ram_needed)}, "
                         f"available {mb(self.ram_available)}")
        return "; ".join(lines)


def kv_cache_bytes(n_layers: int, n_kv_heads: int, head_dim: int, n_ctx: int) -> int:
    """K and V, per layer, per KV head, per position: 2*L*H_kv*d*ctx*2 bytes."""
    return 2 * n_layers * n_kv_heads * head_dim * n_ctx * KV_BYTES


def estimate_numbers(file_size: int, n_layers: int, n_kv_heads: int,
                     head_dim: int, n_ctx: int, n_gpu_layers: int = 0,
                     ram_available: int | None = None,
                     vram_available: int | None = None) -> FitEstimate:
    """Estimate from plain numbers (works before downloading anything)."""
    if n_ctx < 1:
        raise BadParameter("n_ctx", n_ctx, "a positive number of tokens")
    if n_gpu_layers < -1:
        raise BadParameter("n_gpu_layers", n_gpu_layers, "-1 (all), 0 or more")
    layers = max(1, n_layers)
    on_gpu = layers if n_gpu_layers == -1 else min(n_gpu_layers, layers)
    return FitEstimate(
        weights=file_size,
        kv_cache=kv_cache_bytes(n_layers, n_kv_heads, head_dim, n_ctx),
        overhead=OVERHEAD_FIXED + int(OVERHEAD_SHARE * file_size),
        n_ctx=n_ctx,
        gpu_share=on_gpu / layers,
        ram_available=ram_available,
        vram_available=vram_available,
    )


def available_memory() -> tuple[int, int | None]:
    """(available RAM, free VRAM of the first NVIDIA GPU or None), in bytes."""
    import psutil

    vram = None
    try:
        gpus = nvidia_gpus()
        free = [g.get("memory_free_mib") for g in gpus if g.get("memory_free_mib")]
        vram = int(free[0]) * 1024 * 1024 if free else None
    except Exception:  # the GPU query is a nicety, never a reason to fail
        vram = None
    return psutil.virtual_memory().available, vram


def estimate(facts, n_ctx: int, n_gpu_layers: int = 0,
             ram_available: int | None = None,
             vram_available: int | None = None) -> FitEstimate:
    """Estimate for a model file's facts (see kit.modelfile.read_facts)."""
    heads = facts.head_count or 1
    head_dim = (facts.embedding_length or 0) // heads
    return estimate_numbers(facts.file_size, facts.block_count or 1,
                            facts.head_count_kv or heads, head_dim, n_ctx,
                            n_gpu_layers, ram_available, vram_available)


def check(facts, n_ctx: int, n_gpu_layers: int = 0,
          ram_available: int | None = None,
          vram_available: int | None = None) -> FitEstimate:
    """Like estimate() with this machine's memory; raise WontFit if too big."""
    if ram_available is None:
        ram_available, free_vram = available_memory()
        vram_available = vram_available if vram_available is not None else free_vram
    est = estimate(facts, n_ctx, n_gpu_layers, ram_available, vram_available)
    if not est.fits:
        raise WontFit(est.explain())
    return est
