"""Errors of finding, downloading, packing and quantizing models (notebooks 02-03)."""
from __future__ import annotations

from kit.errors.base import KitError, ModelNotFound


# ---- finding and downloading models (kit.hub, kit.models.pull.pull) ---------------

class HubOffline(KitError):
    """No network (or HF_HUB_OFFLINE=1) and the file is not in the cache."""

    def __init__(self, what: str, reason: str):
        super().__init__(
            f"Cannot fetch {what}: {reason}. Models you already downloaded "
            "still work offline (`kit list`). To download, connect to the "
            "internet (and unset HF_HUB_OFFLINE), point HF_ENDPOINT at a room "
            "mirror, or install an offline pack (`kit pack install DIR`)."
        )


class HubAccessDenied(KitError):
    """A gated or private repository (HTTP 401/403); the token is never shown."""

    def __init__(self, repo_id: str, status: int, has_token: bool):
        if has_token:
            why = (f"your access token does not give access to {repo_id} "
                   f"(HTTP {status})")
        else:
            why = (f"{repo_id} is gated or private and no access token was "
                   f"sent (HTTP {status})")
        super().__init__(
            f"{why}. Open https://huggingface.co/{repo_id} in a browser, log "
            "in and accept the licence; then create a read token in your "
            "account settings and run `hf auth login` (or set HF_TOKEN), and "
            "try again. Or choose a model that is not gated (`kit search`)."
        )
        self.repo_id, self.status = repo_id, status


class HubNotFound(KitError):
    """HTTP 404: no such repository, revision or file."""

    def __init__(self, what: str, hint: str = ""):
        super().__init__(
            f"Not found on the Hub: {what}. "
            + (hint or "Check the spelling, or find models with `kit search TEXT`.")
        )


class ChecksumMismatch(KitError):
    def __init__(self, what: str, got: str, expected: str):
        super().__init__(
            f"The download of {what} is damaged: its sha256 is {got[:12]}..., "
            f"the Hub says {expected[:12]}.... Nothing was kept; run the same "
            "command again to download it afresh."
        )


class NotEnoughDisk(KitError):
    def __init__(self, what: str, needed: int, free: int, where):
        super().__init__(
            f"Not enough disk space for {what}: it needs {needed / 1e9:.2f} GB "
            f"more but only {free / 1e9:.2f} GB is free in {where}. Free some "
            "space (`kit rm NAME` removes a model), or set HF_HOME (downloads) "
            "or KIT_HOME (the kit's own models) to a folder on a bigger drive."
        )


class DiskFull(KitError):
    """A write failed for want of space (ENOSPC, a quota, a size limit)."""

    def __init__(self, path, exc: OSError):
        super().__init__(
            f"The disk is full: could not write {path} ({exc.strerror or exc}). "
            "Nothing was changed. Free some space (`kit rm NAME` removes a "
            "model; empty the Trash), then run the same command again."
        )
        self.path = path


class DownloadFailed(KitError):
    def __init__(self, what: str, reason: str):
        super().__init__(
            f"The download of {what} stopped: {reason}. What arrived is kept: "
            "run the same command again and it continues where it stopped."
        )


class NotPulledYet(ModelNotFound):
    """A catalog model that is not downloaded yet."""

    def __init__(self, name: str, size: int | None = None):
        KitError.__init__(
            self,
            f"{name!r} is not downloaded yet. Run "
            f"`kit pull {name}`"
            + (f" ({size / 1e9:.2f} GB)" if size else "")
            + " first, or choose an installed model (`kit list`)."
        )
        self.name = name


# ---- offline workshop packs (kit.pack) ---------------------------------------

class PackError(KitError):
    """A pack that cannot be built, read, served or installed; says why."""


class PackInstallFailed(PackError):
    """Some models of a pack could not be installed; the others were."""

    def __init__(self, failures: dict[str, str], installed: list[str]):
        lines = "; ".join(f"{name}: {why}" for name, why in failures.items())
        ok = ", ".join(installed) or "none"
        super().__init__(
            f"Could not install {len(failures)} model(s) from the pack: {lines} "
            f"Installed fine: {ok}. Run the same `kit pack install` again to "
            "retry (downloads resume); if a checksum is still wrong, ask the "
            "instructor to rebuild the pack (`kit pack build DIR --force`)."
        )
        self.failures, self.installed = failures, installed


class NoGpuSupport(KitError):
    """A GPU option was asked of a llama-cpp-python built for the CPU only."""

    def __init__(self, asked: str = "n_gpu_layers", fallback_hint: bool = True):
        super().__init__(
            f"{asked} asks for the GPU, but this llama-cpp-python was built "
            "without GPU support, so nothing would move to a GPU. Use 0 GPU "
            "layers (CPU), or rebuild it with CUDA: CMAKE_ARGS=\"-DGGML_CUDA=on\" "
            "pip install --force-reinstall --no-cache-dir llama-cpp-python "
            "(Apple: -DGGML_METAL=on; README: GPU)."
            + (" To run on the CPU anyway, pass gpu_fallback=True." if fallback_hint
               else "")
        )
        self.asked = asked


class UnknownModelName(ModelNotFound):
    """`kit pull NAME` for a name that is neither in the catalog nor on the Hub."""

    def __init__(self, name: str, similar: list[str] | None = None):
        near = f" Similar catalog names: {', '.join(similar)}." if similar else ""
        KitError.__init__(
            self,
            f"{name!r} is not a catalog name.{near} See the catalog with "
            "`kit search TEXT` (it works offline too), or name a Hub "
            "repository like this: `kit pull hf.co/OWNER/REPO:Q4_K_M`."
        )
        self.name = name


# ---- quantizing and measuring quality (kit.quantize, kit.evaluate) -----------

class UnknownQuantType(KitError):
    def __init__(self, name: str, valid):
        super().__init__(
            f"Unknown quantization type {name!r}. Valid types: "
            f"{', '.join(valid)}. Example: `kit quantize smollm2:135m "
            "--types q8_0,q4_k_m`."
        )
        self.name = name


class OutputExists(KitError):
    def __init__(self, path, name: str):
        super().__init__(
            f"{name} already exists ({path}). Pass force=True (CLI: --force) "
            f"to make it again, or remove it first (`kit rm {name}`)."
        )
        self.path, self.name = path, name


class QuantizeFailed(KitError):
    def __init__(self, what: str, reason: str):
        super().__init__(
            f"Quantizing {what} failed: {reason}. Nothing was kept or "
            "registered. Check that the input is a complete model file "
            "(`kit info MODEL`) and that the disk has room, then try again."
        )


class EvalTextTooShort(KitError):
    def __init__(self, n_tokens: int, n_ctx: int):
        super().__init__(
            f"The evaluation text is {n_tokens} tokens long, shorter than one "
            f"window of {n_ctx} tokens. Use a longer text"
            + (f", or a smaller window (n_ctx, CLI: --ctx), e.g. n_ctx="
               f"{_smaller_ctx(n_tokens)}." if n_tokens >= 32 else ".")
        )
        self.n_tokens, self.n_ctx = n_tokens, n_ctx


def _smaller_ctx(n_tokens: int) -> int:
    n = 16  # the largest power of two that fits in the text
    while n * 2 <= n_tokens:
        n *= 2
    return n


class EngineCannotRun(KitError):
    """The chosen engine cannot run this model file; said before loading."""

    def __init__(self, reason: str):
        super().__init__(reason + ".")
        self.reason = reason


class NoCtransformersGpu(KitError):
    def __init__(self):
        super().__init__(
            "gpu_layers asks ctransformers for the GPU, but its CUDA libraries "
            "are not installed or there is no NVIDIA GPU, so nothing would move "
            "to a GPU. Use 0 GPU layers, or on a machine with an NVIDIA GPU run "
            "`pip install ctransformers[cuda]`."
        )


class BadPromptSet(KitError):
    def __init__(self, source, problem: str):
        super().__init__(
            f"Cannot use the prompts in {source}: {problem}. Built-in sets: "
            "`roles`, `quick`; your own file may be .json (a list of prompts, "
            "each text or {\"id\": ..., \"prompt\": ...}), .yaml or .txt (prompts "
            "separated by blank lines)."
        )
        self.source = source
