"""What is checked before and while a model is trained (notebook 10, kit/finetune.py).

llama.cpp asserts on a bad setting and takes the whole process down with it
(a learning rate of 0 aborts the Jupyter kernel), so every setting is checked
here first, with the allowed range in the message. A run holds a lock per
output name that the operating system releases when the process dies, even
when it is killed, so a dead run's lock never blocks the next one; the files
a dead run left half-written are removed by the next run of the same name.

>>> check_settings(lr=0.0)
Traceback (most recent call last):
kit.errors.base.BadParameter: lr=0.0 is out of range: lr must be ...
"""
from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

from kit.errors import BadParameter, TrainingInProgress, TrainingTooLong

LR_RANGE = (1e-8, 1e-2)  # AdamW on a pretrained model: above 1e-2 it diverges
MAX_EPOCHS = 1000  # the time estimate refuses long runs; this catches typos
MAX_CTX = 4096  # activations grow with the window: beyond this a laptop cannot
CTX_STEP = 256  # llama.cpp makes contexts in steps of 256 (100 becomes 256)
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
SAMPLE_CHARS = 200_000  # a larger text is estimated from a sample first
MEASURE_STEPS = 3  # steps timed before the measured estimate is printed
STOP_FACTOR = 1.5  # measured time this far over max_minutes: stop


def _whole(name, value, low, high, what):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadParameter(name, value, f"a whole number from {low} to {high} ({what})")


def check_settings(epochs: int = 3, lr: float = 3e-5, n_ctx: int = 256,
                   threads: int | None = None, label: str = "ft",
                   max_tokens: int | None = None, max_minutes: float | None = 30,
                   context_length: int | None = None) -> int:
    """Refuse any setting llama.cpp would crash on or that cannot make sense;
    returns the context llama.cpp will really use (a multiple of 256)."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (
            math.isfinite(lr) and LR_RANGE[0] <= lr <= LR_RANGE[1]):
        raise BadParameter("lr", lr, f"a number from {LR_RANGE[0]:g} to {LR_RANGE[1]:g}"
                           " (fine-tuning uses about 1e-5 to 1e-4; CLI: --lr)")
    _whole("epochs", epochs, 1, MAX_EPOCHS, "passes over the data; CLI: --epochs")
    top = min(MAX_CTX, context_length or MAX_CTX)
    _whole("n_ctx", n_ctx, 1, top, f"tokens per window, used in steps of {CTX_STEP}"
           "; CLI: --ctx")
    if threads is not None:
        _whole("threads", threads, 1, 512, "CLI: --threads")
    if not isinstance(label, str) or not LABEL.fullmatch(label):
        raise BadParameter("label", label, "1 to 40 letters, digits, '.', '_' or "
                           "'-', starting with a letter or digit (CLI: --label)")
    if max_tokens is not None:
        _whole("max_tokens", max_tokens, 2, 10**9, "tokens of data to use")
    if max_minutes is not None and (
            isinstance(max_minutes, bool) or not isinstance(max_minutes, (int, float))
            or not (math.isfinite(max_minutes) and max_minutes > 0)):
        raise BadParameter("max_minutes", max_minutes, "a number above 0, or None "
                           "for no limit (CLI: --max-minutes, or --yes)")
    return -(-n_ctx // CTX_STEP) * CTX_STEP


def estimate_tokens(llm, text: str, sample: int = SAMPLE_CHARS) -> int:
    """Tokens in `text`, counted exactly when short, else from spread samples."""
    if len(text) <= sample:
        return len(llm.tokenize(text.encode(), add_bos=True))
    part, step = sample // 4, len(text) // 4
    pieces = [text[i * step: i * step + part] for i in range(4)]
    n = sum(len(llm.tokenize(p.encode(), add_bos=False)) for p in pieces)
    return int(n * len(text) / (4 * part))


# ---- the lock: one run per output name -------------------------------------------

def claim(lock: Path, name: str) -> int:
    """Hold `lock` (an OS lock, released when the process dies) or refuse.

    Returns the open file, to give to release(). The file holds our process
    number, for the message another run shows.
    """
    try:
        import fcntl
    except ImportError:  # Windows: the file's presence is the lock
        return _claim_by_pid(lock, name)
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise TrainingInProgress(name, int(pid) if pid.isdigit() else -1,
                                     lock) from None
        try:  # the file we locked may have been removed by its last holder
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)
    raise TrainingInProgress(name, -1, lock)


def release(lock: Path, fd: int) -> None:
    """Remove the lock file while still holding it, then let go."""
    Path(lock).unlink(missing_ok=True)
    os.close(fd)


def _claim_by_pid(lock: Path, name: str) -> int:
    import psutil

    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_RDWR)
            os.write(fd, str(os.getpid()).encode())
            return fd
        except FileExistsError:
            text = lock.read_text().strip() if lock.exists() else ""
            if text.isdigit() and psutil.pid_exists(int(text)):
                raise TrainingInProgress(name, int(text), lock) from None
            from kit.util import remove_stale

            remove_stale(lock)  # left by a run that died
    raise TrainingInProgress(name, -1, lock)


def remove_leftovers(dst: Path) -> list[Path]:
    """Half-written files of `dst` from a run that was killed (call holding the lock)."""
    from kit.util import remove_stale

    gone = []
    for suffix in (".partial", ".trained"):
        f = dst.with_name(dst.name + suffix)
        if remove_stale(f) is not None:
            gone.append(f)
    return gone


# ---- time: estimated first, then measured ----------------------------------------

class StepClock:
    """Times the first steps and says what the whole run will really take.

    Stops the run (TrainingTooLong) when the measured time is far over
    max_minutes, rather than let a busy machine run for an hour.
    """

    def __init__(self, total_steps: int, extra_steps: float, estimate_s: float,
                 max_minutes: float | None, say=print):
        self.total, self.extra, self.estimate = total_steps, extra_steps, estimate_s
        self.max_minutes, self.say = max_minutes, say
        self.t0 = time.perf_counter()
        self.measured: float | None = None  # seconds per step

    def __call__(self, done: int, loss: float) -> None:
        if self.measured is not None or done < min(MEASURE_STEPS, self.total):
            return
        self.measured = (time.perf_counter() - self.t0) / done
        whole = self.measured * (self.total + self.extra)
        left = self.measured * (self.total - done + self.extra)
        self.say(f"Measured: {self.measured:.1f} s per step, so about "
                 f"{minutes(whole)} in all, {minutes(left)} left (estimated "
                 f"before: {minutes(self.estimate)}).")
        if self.max_minutes is not None and whole > STOP_FACTOR * 60 * self.max_minutes:
            raise TrainingTooLong(f"{minutes(whole)} (measured over {done} steps)",
                                  self.max_minutes)


def minutes(s: float) -> str:
    """'45 s', '3.5 min', '12 min'."""
    if s < 90:
        return f"{s:.0f} s"
    return f"{s / 60:.1f} min" if s < 600 else f"{s / 60:.0f} min"
