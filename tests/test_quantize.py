"""Quantization by hand (numpy) and with llama.cpp's quantizer, on the real starter."""
import json
import os
import signal
import subprocess
import sys

import gguf
import numpy as np
import pytest

from kit.errors import (BadModelFile, KitError, OutputExists, QuantizeFailed,
                        UnknownQuantType)
from kit.gguf_check import scan
from kit.quantize import (QUANT_TYPES, error_stats, find_fallbacks, output_path,
                          parse_types, quantize, quantize_q4_0, quantize_q8_0,
                          read_weights, reference_bytes, round_half_away, round_trip)
from kit.models.pull import remove
from kit.models.registry import installed, register

TYPES = ["q8_0", "q4_k_m", "q2_k"]


@pytest.fixture(scope="module")
def home(tmp_path_factory, starter_path):
    """A private KIT_HOME holding the starter, so variants stay out of others' way."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("quant-home")
    mp.setenv("KIT_HOME", str(path))
    register("smollm2:135m", starter_path, source="test")
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def made(home):
    """The starter quantized by llama.cpp to three types, with progress seen."""
    seen = []
    variants = quantize("smollm2:135m", TYPES, quiet=True,
                        progress=lambda q, i, n: seen.append((q, i, n)))
    return {v.qtype: v for v in variants}, seen


# ---- by hand --------------------------------------------------------------------

def test_read_weights_matches_the_gguf_packages_reader(starter_path):
    w = read_weights(starter_path, "blk.0.ffn_down.weight")
    t = next(t for t in gguf.GGUFReader(starter_path).tensors
             if t.name == "blk.0.ffn_down.weight")
    want = gguf.quants.dequantize(t.data, t.tensor_type)
    assert w.dtype == np.float32 and w.shape == (576, 1536) == want.shape
    assert np.array_equal(w, want)


def test_read_weights_unknown_tensor_lists_names(starter_path):
    with pytest.raises(KitError, match="token_embd.weight"):
        read_weights(starter_path, "no.such.weight")


def test_round_half_away_from_zero_like_c():
    got = round_half_away(np.array([0.5, 1.5, 2.5, -2.5, 2.4999, -0.49], np.float32))
    assert got.tolist() == [1, 2, 3, -3, 2, 0]


@pytest.mark.parametrize("name", ["blk.0.attn_q.weight", "blk.7.ffn_down.weight",
                                  "blk.29.attn_v.weight"])
def test_numpy_bytes_equal_the_reference_implementation(starter_path, name):
    w = read_weights(starter_path, name)
    assert quantize_q8_0(w).to_bytes() == reference_bytes(w, "Q8_0")
    assert quantize_q4_0(w).to_bytes() == reference_bytes(w, "Q4_0")


def test_numpy_q8_0_equals_llama_cpps_own_output(starter_path, made):
    # llama.cpp turned each Q4_1 tensor into numbers and quantized them to
    # Q8_0; our dozen lines of numpy must give the very same bytes.
    out = scan(made[0]["q8_0"].path)
    q8 = [t for t in out.tensors if t.type_name == "Q8_0"]
    assert len(q8) == 211
    for t in q8[::20] + [next(t for t in q8 if t.name == "token_embd.weight")]:
        theirs = np.memmap(out.path, np.uint8, "r", t.offset, (t.n_bytes,)).tobytes()
        assert quantize_q8_0(read_weights(starter_path, t.name)).to_bytes() == theirs


def test_blocks_round_trip_and_error(starter_path):
    w = read_weights(starter_path, "blk.3.attn_output.weight")
    q8, q4 = quantize_q8_0(w), quantize_q4_0(w)
    assert (q8.bits_per_weight, q4.bits_per_weight) == (8.5, 4.5)
    assert q8.ints.min() >= -127 and q8.ints.max() <= 127
    assert q4.ints.min() >= -8 and q4.ints.max() <= 7
    r8, r4 = q8.dequantize(), q4.dequantize()
    assert r8.shape == w.shape
    # each number is off by at most half a step (its block's scale), plus
    # what storing the scale in 16 bits adds: 127 steps x 2**-11 relative
    step = np.repeat(q8.scales.astype(np.float32), 32).reshape(w.shape)
    assert np.all(np.abs(r8 - w) <= step * (0.5 + 127 * 2**-11))
    e8, e4 = error_stats(w, r8), error_stats(w, r4)
    assert 0 < e8["rmse"] < e4["rmse"] / 10
    assert e4["relative_error"] < 0.2


def test_zero_blocks_and_bad_sizes():
    q = quantize_q8_0(np.zeros(64, np.float32))
    assert np.all(q.scales == 0) and not np.isnan(q.dequantize()).any()
    assert quantize_q4_0(np.zeros(32, np.float32)).to_bytes() == \
        reference_bytes(np.zeros(32, np.float32), "Q4_0")
    with pytest.raises(ValueError, match="blocks of 32"):
        quantize_q8_0(np.ones(40, np.float32))


def test_round_trip_shows_why_requantizing_misleads(starter_path):
    w = read_weights(starter_path, "blk.0.attn_q.weight")  # Q4_1 values
    assert np.array_equal(round_trip(w, "Q4_1"), w)  # the same grid: lossless
    q51, q50 = round_trip(w, "Q5_1"), round_trip(w, "Q5_0")

    def growth(r):
        return float((r * w).sum() / (w * w).sum())

    # Q5_1's 31 steps between min and max do not line up with Q4_1's 15:
    # every block is stretched, an error that always pushes the same way
    assert growth(q51) > 1.01 and abs(growth(q50) - 1) < 0.005
    assert error_stats(w, q51)["rmse"] > error_stats(w, q50)["rmse"]
    with pytest.raises(UnknownQuantType, match="Q5_1"):
        round_trip(w, "Q4_K")


# ---- llama.cpp's quantizer ------------------------------------------------------

def test_each_type_is_written_and_registered(home, made):
    variants, _ = made
    models = installed()
    for q in TYPES:
        v = variants[q]
        assert v.name == f"smollm2:135m-{q}" and v.name in models
        assert v.path.parent.parent == home / "models" and v.path.is_file()
        assert models[v.name]["quant_type"] == q and models[v.name]["owned"]
        assert not list(v.path.parent.glob("*.partial"))
    sizes = [variants[q].size for q in TYPES]
    assert sizes == sorted(sizes, reverse=True)
    assert variants["q8_0"].bits_per_weight == pytest.approx(8.5, abs=0.02)
    assert variants["q8_0"].tensor_types == {"Q8_0": 211, "F32": 61}


def test_progress_counts_every_tensor(made):
    _, seen = made
    for q in TYPES:
        counts = [i for t, i, n in seen if t == q]
        assert counts == list(range(1, 273))


def test_fallbacks_are_reported_with_the_reason(made):
    variants, _ = made
    assert variants["q8_0"].fallbacks == []
    v = variants["q4_k_m"]
    main = v.fallbacks[0]
    assert (main.wanted, main.got) == ("Q4_K", "Q5_0")
    assert main.reason == "row size 576 not divisible by 256"
    assert "blk.0.attn_q.weight" in main.tensors
    # the file agrees: every tensor with rows of 576 is a non-K type
    rows576 = [t for t in scan(v.path).tensors if len(t.shape) == 2
               and t.shape[0] == 576]
    fell = {n for f in v.fallbacks for n in f.tensors}
    assert {t.name for t in rows576} == fell
    assert all(not t.type_name.endswith("_K") for t in rows576)
    # rows of 1536 (ffn_down) are divisible by 256 and really are K-quants
    down = [t for t in scan(v.path).tensors if t.name.endswith("ffn_down.weight")]
    assert all(t.type_name.endswith("_K") for t in down)
    # judged from the file alone (no log), the same tensors are found
    assert {n for f in find_fallbacks(v.path, "q4_k_m") for n in f.tensors} == fell


def test_a_variant_loads_and_generates(made):
    from kit.engines import load

    model = load(str(made[0]["q4_k_m"].path), n_ctx=256, quiet=True)
    assert model.facts.file_type == "Q4_K_M"
    stream = model.generate("The library opens at", max_tokens=12, temperature=0,
                            seed=1)
    assert stream.text.strip() and stream.stats.generated_tokens >= 1


def test_unknown_type_lists_the_valid_ones():
    with pytest.raises(UnknownQuantType) as err:
        parse_types("q8_0,q4_k_x")
    assert "'q4_k_x'" in str(err.value)
    for name in ("q8_0", "q4_k_m", "q2_k", "f16"):
        assert name in str(err.value)
    assert parse_types("Q8_0, q4_k_m,q8_0") == ["q8_0", "q4_k_m"]
    assert set(parse_types(list(QUANT_TYPES))) == set(QUANT_TYPES)


def test_a_rerun_skips_types_made_and_clears_a_killed_runs_partial(made):
    v = made[0]["q2_k"]
    before = v.path.stat().st_mtime_ns
    # what a quantization killed mid-way (SIGKILL, power cut) leaves behind
    stale = output_path("smollm2:135m", "q5_0")
    stale = stale.with_name(stale.name + ".partial")
    stale.write_bytes(b"\0" * 3_000_000)
    again = quantize("smollm2:135m", ["q5_0", "q2_k"], quiet=True)
    assert [x.qtype for x in again] == ["q5_0", "q2_k"]
    assert not stale.exists() and "smollm2:135m-q5_0" in installed()
    assert again[1].path == v.path and again[1].size == v.size
    assert v.path.stat().st_mtime_ns == before  # made before: not redone
    remove("smollm2:135m-q5_0")
    forced = quantize("smollm2:135m", ["q2_k"], force=True, quiet=True)[0]
    assert forced.path == v.path and v.path.stat().st_mtime_ns != before
    assert forced.size == v.size


def test_two_runs_at_once_each_write_their_own_partial(made, home):
    """Two `kit quantize` of one type at the same time (two terminals): both
    finish, the file is whole and registered once, and nothing is left."""
    import subprocess
    import sys

    dst = output_path("smollm2:135m", "q4_0")
    # a dead run's partial goes; a live run's (this process) is left alone
    dead = dst.with_name(f"{dst.name}.999999999.partial")
    live = dst.with_name(f"{dst.name}.{os.getpid()}.partial")
    dst.parent.mkdir(parents=True, exist_ok=True)
    for p in (dead, live):
        p.write_bytes(b"\0" * 1000)
    code = ("from kit.quantize import quantize\n"
            "print(quantize('smollm2:135m', ['q4_0'], force=True, quiet=True)[0].size)")
    env = dict(os.environ, KIT_HOME=str(home))
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-800:] for o in outs]
    sizes = {int(o[0].split()[-1]) for o in outs}
    assert sizes == {dst.stat().st_size}
    assert scan(dst).tensors  # whole and readable
    assert installed()["smollm2:135m-q4_0"]["path"] == str(dst)
    assert not dead.exists() and live.exists()
    live.unlink()
    assert not list(dst.parent.glob("*.partial"))
    remove("smollm2:135m-q4_0")


def test_a_name_held_by_another_file_is_refused_unless_forced(made, starter_path):
    register("smollm2:135m-q4_1", starter_path, source="test")
    try:
        with pytest.raises(OutputExists, match="--force"):
            quantize("smollm2:135m", ["q4_1"], quiet=True)
        assert installed()["smollm2:135m-q4_1"]["path"] == str(starter_path)
    finally:
        remove("smollm2:135m-q4_1")  # registered in place: only forgotten
    assert starter_path.is_file()


def test_ctrl_c_during_quantizing_leaves_nothing(home, made):
    def interrupt(q, i, n):  # as if the learner pressed Ctrl-C mid-way
        if i == 100:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        quantize("smollm2:135m", ["q4_0"], progress=interrupt, quiet=True)
    folder = made[0]["q8_0"].path.parent
    assert not list(folder.glob("*q4_0*"))
    assert "smollm2:135m-q4_0" not in installed()


def test_failing_quantizer_leaves_nothing(home, tmp_path):
    bad = tmp_path / "odd.gguf"  # a sound GGUF file that llama.cpp cannot quantize
    w = gguf.GGUFWriter(bad, "nonesuch")
    w.add_tensor("blk.0.attn_q.weight", np.ones((64, 64), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(QuantizeFailed, match="unknown model architecture"):
        quantize(str(bad), ["q8_0"], quiet=True)
    assert not (home / "models" / "odd").exists()
    assert not any(n.startswith("odd") for n in installed())


def test_damaged_input_is_refused_before_native_code(home, tmp_path, starter_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(starter_path.read_bytes()[:5_000_000])
    with pytest.raises(BadModelFile, match="truncated"):
        quantize(str(cut), ["q8_0"], quiet=True)
    assert not (home / "models" / "cut").exists()


def test_cli_quantize_json_and_errors(home, made):
    env = {**os.environ, "KIT_HOME": str(home)}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "kit", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    out = run("quantize", "smollm2:135m", "--types", "q8_0", "--force", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows[0]["name"] == "smollm2:135m-q8_0" and rows[0]["fallbacks"] == []
    bad = run("quantize", "smollm2:135m", "--types", "q9_9")
    assert bad.returncode == 1 and "Valid types" in bad.stderr and "q4_k_m" in bad.stderr
    again = run("quantize", "smollm2:135m", "--types", "q8_0")
    assert again.returncode == 0 and "made before" in again.stdout, again.stderr
