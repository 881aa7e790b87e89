"""keep_alive, /api/ps, kit ps and kit stop against a real kit serve, with
the official ollama client as the peer."""
import math
import subprocess
import sys
import time

import httpx
import ollama
import pytest

from kit.errors import BadRequest
from kit.server import start
from kit.server.keepalive import seconds

MODEL = "smollm2:135m"


def test_durations_read_as_ollama_writes_them():
    assert seconds("5m") == 300 and seconds("1h30m") == 5400 and seconds("90s") == 90
    assert seconds("500ms") == 0.5 and seconds("300") == 300 and seconds(2.5) == 2.5
    assert seconds(0) == 0 and seconds("0") == 0 and seconds(None) is None
    assert math.isinf(seconds(-1)) and math.isinf(seconds("-1m"))
    for bad in ("5 minutes", "m5", "5x", True):
        with pytest.raises(BadRequest, match="keep_alive"):
            seconds(bad)


def kit(*args):
    return subprocess.run([sys.executable, "-m", "kit", *args], capture_output=True,
                          text=True, timeout=60)


def test_keep_alive_ps_and_stop(monkeypatch):
    monkeypatch.delenv("KIT_API_KEY", raising=False)
    with start([MODEL], n_ctx=256, n_threads=1, parallel=2, quiet=True) as srv:
        oll = ollama.Client(host=srv.url, timeout=120)
        oll.generate(model=MODEL, prompt="Hi", keep_alive=-1, options={"num_predict": 2})
        (m,) = oll.ps().models
        assert m.model == MODEL and m.size > 0 and m.expires_at is None
        assert "kept loaded" in kit("ps", "--url", srv.url).stdout
        oll.generate(model=MODEL, prompt="Hi", keep_alive="2s", options={"num_predict": 2})
        assert oll.ps().models[0].expires_at is not None
        deadline = time.monotonic() + 20
        while oll.ps().models and time.monotonic() < deadline:
            time.sleep(0.5)
        assert oll.ps().models == []  # unloaded when its 2 s ran out
        oll.generate(model=MODEL, prompt="")  # loads it again (kept)
        assert len(oll.ps().models) == 1
        stopped = kit("stop", MODEL, "--url", srv.url)
        assert stopped.returncode == 0, stopped.stderr
        assert oll.ps().models == []
        assert "No model is loaded" in kit("ps", "--url", srv.url).stdout
        r = httpx.post(srv.url + "/api/generate", timeout=30,
                       json={"model": MODEL, "prompt": "Hi", "keep_alive": "5 minutes"})
        assert r.status_code == 400 and "keep_alive" in r.json()["error"]
    down = kit("ps", "--url", srv.url)
    assert down.returncode != 0 and "kit serve" in down.stderr
