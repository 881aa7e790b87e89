"""Threads that make way for a busy neighbour (notebook 04, "Speed that holds").

llama.cpp splits each token's arithmetic among its threads, and the threads
meet after every step of the network. When another program keeps one of the
cores busy, one of those threads waits for the core, and every other thread
waits for it: on two cores, two threads beside one busy program run at a
quarter of their idle speed, while one thread keeps nearly all of its own.

`ThreadGovernor` watches how much of the machine the *other* programs use
(all the CPU time the system spent, minus this process's own) and tells
llama.cpp to use the cores that are left, through its public
`llama_set_n_threads`. It looks before each answer (at what the others did
since its last look) and every quarter of a second while generating, so the
model takes the cores back when the neighbour stops.

>>> gov = ThreadGovernor(set_threads=print, most=2)   # doctest: +SKIP
>>> gov.adjust()                                      # doctest: +SKIP
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager

# Look again at most this often (seconds): the kernel counts CPU time in
# ticks of 10 ms, so shorter windows only measure noise.
INTERVAL_S = 0.25


def _busy_seconds() -> float:
    """CPU seconds every program on the machine has used (all cores)."""
    import psutil

    t = psutil.cpu_times()  # (steal is the hypervisor's; guest is inside user)
    return t.user + t.system + sum(getattr(t, k, 0.0) for k in ("nice", "irq", "softirq"))


def _own_seconds() -> float:
    """CPU seconds this process has used (all its threads)."""
    t = os.times()
    return t.user + t.system


class ThreadGovernor:
    """Chooses how many threads llama.cpp uses: the free cores, at most `most`.

    set_threads(n): the call that applies a choice (the engine's).
    cores: the CPUs this process may run on (default: its affinity).
    sample(): (clock(), CPU seconds of all programs, CPU seconds of this
    process); the default reads the system's counters. clock(): seconds.
    """

    def __init__(self, set_threads, most: int, cores: int | None = None, sample=None,
                 clock=time.monotonic):
        self.set_threads, self.most = set_threads, max(1, most)
        self._sample, self._clock = sample or _sample, clock
        self.cores = cores or _usable_cpus()
        self.threads = self.most
        self.others = 0.0  # cores the other programs used, last window
        self.changes = 0  # how often the choice changed (notebook 04 shows it)
        self._last = self._sample()  # the first window opens now

    def choose(self, others: float) -> int:
        """The thread count for `others` cores in use by other programs."""
        free = self.cores - others
        return max(1, min(self.most, int(free + 0.5)))

    def adjust(self) -> int:
        """Measure, and apply a new thread count if the free cores changed."""
        if self._clock() - self._last[0] < INTERVAL_S:
            return self.threads  # keep the window open until it is long enough
        now = self._sample()
        wall = now[0] - self._last[0]
        others = max(0.0, (now[1] - self._last[1]) - (now[2] - self._last[2])) / wall
        self._last, self.others = now, others
        threads = self.choose(others)
        if threads != self.threads:
            self.set_threads(threads)
            self.threads = threads
            self.changes += 1
        return threads


def _sample() -> tuple[float, float, float]:
    return time.monotonic(), _busy_seconds(), _own_seconds()


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def watched(tokens, governor: ThreadGovernor | None):
    """Token ids from `tokens`, letting the governor look between them."""
    if governor is None:
        yield from tokens
        return
    governor.adjust()  # what the others did since the last look
    for token in tokens:
        yield token
        governor.adjust()


@contextmanager
def busy_neighbour(seconds: float = 120):
    """Another program keeping one core busy meanwhile (as a notebook kernel
    or a browser tab does), for lessons, tests and benchmarks. It stops at the
    end of the `with` block, or after `seconds` whatever happens."""
    spin = f"import time\nend = time.time() + {float(seconds)}\nwhile time.time() < end: pass"
    proc = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.3)  # let it start spinning
        yield proc
    finally:
        proc.kill()
        proc.wait()
