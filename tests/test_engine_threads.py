"""Threads that make way for a busy neighbour (kit.engines.threads)."""
import time

import pytest

from kit.engines import load
from kit.engines.threads import INTERVAL_S, ThreadGovernor, busy_neighbour


@pytest.fixture
def neighbour():
    with busy_neighbour(seconds=60) as proc:
        yield proc


def watch(gov: ThreadGovernor, seconds: float) -> list[int]:
    """Let the governor look, as it does between tokens, for `seconds`."""
    seen, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        seen.append(gov.adjust())
        time.sleep(0.02)
    return seen


@pytest.mark.parametrize("cores, others, most, want", [
    (2, 0.0, 2, 2), (2, 0.3, 2, 2), (2, 0.7, 2, 1), (2, 1.0, 2, 1), (2, 2.0, 2, 1),
    (8, 1.0, 4, 4), (8, 5.0, 4, 3), (4, 1.2, 4, 3), (1, 0.0, 4, 1),
])
def test_it_uses_the_cores_the_others_leave(cores, others, most, want):
    gov = ThreadGovernor(lambda n: None, most=most, cores=cores)
    assert gov.choose(others) == want


class Machine:
    """A pretend machine: the clock and the CPU seconds the governor reads."""

    def __init__(self):
        self.t = self.all = self.own = 0.0

    def run(self, seconds: float, others: float, own: float = 2.0):
        self.t += seconds
        self.all += (others + own) * seconds
        self.own += own * seconds

    def sample(self):
        return self.t, self.all, self.own


def test_it_steps_aside_and_takes_the_cores_back():
    m, applied = Machine(), []
    gov = ThreadGovernor(applied.append, most=2, cores=2, sample=m.sample,
                         clock=lambda: m.t)
    m.run(0.5, others=0.0)
    assert gov.adjust() == 2 and applied == []  # quiet: nothing to change
    m.run(0.1, others=1.0)
    assert gov.adjust() == 2  # a window too short to judge
    m.run(0.3, others=1.0)  # a neighbour keeps a core busy
    assert gov.adjust() == 1 and applied == [1] and gov.others == pytest.approx(1.0)
    m.run(0.5, others=0.0, own=1.0)  # it stopped
    assert gov.adjust() == 2 and applied == [1, 2] and gov.changes == 2


def test_it_sees_a_real_busy_program(neighbour):
    applied = []
    gov = ThreadGovernor(applied.append, most=2, cores=2)
    assert gov.threads == 2 and applied == []  # nothing changes until it has looked
    watch(gov, 4 * INTERVAL_S)
    assert gov.others > 0.7, "the busy neighbour was not seen"
    assert gov.threads == 1 and applied[-1] == 1


def test_a_short_window_changes_nothing():
    applied = []
    gov = ThreadGovernor(applied.append, most=2, cores=2)
    gov.adjust()
    gov.adjust()  # well under INTERVAL_S since the first look: no measurement
    assert applied == [] and gov.threads == 2


def test_the_engine_adapts_and_answers_as_it_would_with_fixed_threads(neighbour):
    fixed = load("smollm2:135m", n_ctx=256, n_threads=2, adapt_threads=False, quiet=True)
    model = load("smollm2:135m", n_ctx=256, n_threads=2, adapt_threads=True, quiet=True)
    assert fixed.governor is None and model.governor is not None
    assert model is not fixed  # the choice is part of the loaded model's identity
    assert "up to 2 threads" in model.describe()
    prompt, kw = "Once upon a time, in a lighthouse by the sea, there lived", dict(
        max_tokens=96, temperature=0, seed=1)
    model.governor.cores = 2  # as on a two-core laptop, whatever this machine has
    adaptive = model.generate(prompt, **kw).text
    assert model.governor.threads == 1  # it saw the neighbour while generating
    assert adaptive == fixed.generate(prompt, **kw).text  # same arithmetic, same answer


def test_one_thread_has_nothing_to_adapt():
    model = load("smollm2:135m", n_ctx=256, n_threads=1, adapt_threads=True, quiet=True)
    assert model.governor is None and "1 thread," in model.describe()


def test_the_setting_turns_it_off(monkeypatch):
    from kit.settings import get_settings

    monkeypatch.delenv("KIT_ADAPT_THREADS", raising=False)
    assert get_settings().adapt_threads is True  # on unless asked
    monkeypatch.setenv("KIT_ADAPT_THREADS", "0")
    assert get_settings().adapt_threads is False
    model = load("smollm2:135m", n_ctx=192, n_threads=2, quiet=True)
    assert model.governor is None


FIRST_LOAD = {  # each way llama.cpp's library can first load in a process
    "engine": "from kit.engines.llamacpp import import_llama_cpp\nimport_llama_cpp()",
    "server": "from kit.server.app import create_app\nfrom kit.server.models import "
              "ModelPool\ncreate_app(ModelPool(['smollm2:135m']), api_key=None)",
}


@pytest.mark.parametrize("first", FIRST_LOAD)
@pytest.mark.parametrize("given, want", [
    ({}, {"OMP_WAIT_POLICY": "ACTIVE", "GOMP_SPINCOUNT": "300000"}),
    ({"OMP_WAIT_POLICY": "PASSIVE"}, {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None}),
])
def test_openmp_waits_briefly_unless_the_learner_chose(given, want, first):
    """Set before llama.cpp's library loads (a fresh process), kept if set."""
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | given
    code = (f"import json, os, sys\n{FIRST_LOAD[first]}\nassert 'llama_cpp' in sys.modules\n"
            "print(json.dumps({k: os.environ.get(k) for k in "
            "('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == want
