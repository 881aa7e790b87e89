"""Where the kit keeps things and the defaults it uses, read when called.

>>> get_settings().home   # $KIT_HOME, else ~/.local/share/kit
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STARTER_NAME = "smollm2:135m"


def _default_threads() -> int:
    # llama.cpp runs best on physical cores; without psutil guess half the
    # logical ones (hyper-threading), never fewer than one.
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except Exception:  # psutil missing or unable to tell
        n = None
    return max(1, n or (os.cpu_count() or 2) // 2 or 1)


@dataclass(frozen=True)
class Settings:
    home: Path
    default_model: str = STARTER_NAME
    n_ctx: int = 2048
    n_threads: int = 2
    adapt_threads: bool = True  # fewer threads while other programs are busy

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def registry_path(self) -> Path:
        return self.home / "models.json"


def get_settings() -> Settings:
    """Read KIT_HOME, KIT_MODEL, KIT_THREADS, KIT_ADAPT_THREADS and KIT_CTX now (never at import)."""
    env = os.environ
    home = Path(env.get("KIT_HOME") or Path.home() / ".local" / "share" / "kit")
    return Settings(
        home=home.expanduser(),
        default_model=env.get("KIT_MODEL", STARTER_NAME),
        n_ctx=int(env.get("KIT_CTX", "2048")),
        n_threads=int(env.get("KIT_THREADS") or _default_threads()),
        adapt_threads=env.get("KIT_ADAPT_THREADS", "1").strip().lower()
        not in ("0", "false", "no", "off"),
    )


# OpenMP's waiting, for llama.cpp's threads (notebook 04, "Speed that holds").
# libgomp reads these once, when llama.cpp's library loads. Its default spins
# only ~100 times at each of llama.cpp's barriers once a process holds more
# OpenMP threads than cores (as soon as two Python threads have used a model:
# a notebook and its chat widget, a server's requests), which cost a third of
# the speed here; ACTIVE alone spins at every barrier but also keeps idle
# threads spinning for minutes. Together: a short spin at barriers, idle
# threads asleep within milliseconds. A value the learner set is kept.
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "300000"}


def apply_openmp_defaults() -> None:
    """Set OPENMP_DEFAULTS in this process's environment, unless already set
    (call before importing llama_cpp; later it changes nothing)."""
    import sys

    if "llama_cpp" in sys.modules:
        return
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return  # the learner's own choice, whole
    os.environ.update(OPENMP_DEFAULTS)
