"""kit.bench on the real starter model: structure, consistency, GPU refusal, export.

No timing is asserted (the machine is shared): only what the figures must
satisfy whatever the speed.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

import kit.bench as bench
from kit.engines import _LOADED, load
from kit.engines.llamacpp import gpu_offload_supported
from kit.errors import BadParameter, KitError, NoGpuSupport

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
TINY = dict(n_prompt=8, n_gen=4, reps=2, quiet=True)
no_gpu = pytest.mark.skipif(gpu_offload_supported(), reason="this build can offload")


@pytest.fixture(scope="module")
def sweep(starter_path):
    """Two names for the same model x threads 1,2: 2 x 2 x 1 x 2 = 8 rows."""
    return bench.run_bench(["smollm2:135m", str(starter_path)], threads="1,2",
                           bandwidth=5e9, **TINY)


def test_parse_lists():
    assert bench.parse_list("1,2") == [1, 2]
    assert bench.parse_list(" 2, 1 ,2") == [2, 1]  # repeats dropped, order kept
    assert bench.parse_list("0,8,all", "gpu_layers", allow_all=True) == [0, 8, -1]
    assert bench.parse_list([0, "ALL"], "gpu_layers", allow_all=True) == [0, -1]
    assert bench.parse_list(4) == [4]


@pytest.mark.parametrize("text,kw", [("0", {}), ("two", {}), ("1,,2", {}), ("", {}),
                                     ("all", {}), ("-2", {"allow_all": True})])
def test_bad_lists_name_the_format(text, kw):
    with pytest.raises(BadParameter, match="comma-separated"):
        bench.parse_list(text, **kw)


def test_one_row_per_model_thread_layer_and_test(sweep):
    assert len(sweep) == 2 * 2 * 1 * 2
    assert list(sweep.columns) == bench.COLUMNS
    assert sweep["test"].tolist() == ["pp8", "tg4"] * 4
    assert sweep["threads"].tolist() == [1, 1, 2, 2] * 2
    assert set(sweep["model"]) == {"smollm2:135m", "SmolLM2-135M-Instruct.Q4_1"}
    assert (sweep["backend"] == "CPU").all() and (sweep["gpu_layers"] == 0).all()


def test_every_token_was_evaluated_and_figures_agree(sweep):
    # The KV cache held exactly N positions after each test: N tokens evaluated.
    assert (sweep["n_cached"] == sweep["n_tokens"]).all()
    assert (sweep["reps"] == 2).all() and (sweep["tps_std"] >= 0).all()
    assert (sweep["tps_mean"] > 0).all() and (sweep["load_s"] > 0).all()
    # mean of N/seconds is at least N/mean(seconds) (Jensen), never below
    assert (sweep["tps_mean"] >= sweep["n_tokens"] / sweep["seconds_mean"] * 0.999).all()
    pp, tg = sweep[sweep.test == "pp8"], sweep[sweep.test == "tg4"]
    # first token = reading the prompt + one generation step
    assert np.allclose(pp["ttft_s"].values,
                       pp["seconds_mean"].values + 1 / tg["tps_mean"].values)
    assert (sweep["peak_rss_bytes"] > 0).all()


def test_bandwidth_ceiling_only_for_generation(sweep, starter_path):
    per_token = bench.bytes_per_token(starter_path)
    tg = sweep[sweep.test == "tg4"]
    assert np.allclose(tg["ceiling_tps"], 5e9 / per_token)
    assert np.allclose(tg["bw_fraction"], tg["tps_mean"] / tg["ceiling_tps"])
    assert sweep[sweep.test == "pp8"]["bw_fraction"].isna().all()
    assert (sweep["bandwidth_gbs"] == 5.0).all()


def test_bytes_per_token_of_the_starter_matches_gguf_reader(starter_path):
    # SmolLM2 shares its embedding table with the output layer: all of it is read.
    reader = gguf.GGUFReader(starter_path)
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names
    assert bench.bytes_per_token(starter_path) == sum(int(t.n_bytes) for t in reader.tensors)


def test_bytes_per_token_reads_one_embedding_row_when_output_is_separate(tmp_path):
    path = tmp_path / "two-tables.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((100, 8), dtype=np.float32))
    w.add_tensor("output.weight", np.zeros((100, 8), dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.zeros((8, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert bench.bytes_per_token(path) == 3200 + 256 + 8 * 4


def test_memory_bandwidth_is_a_plausible_rate():
    one = bench.memory_bandwidth(size_mb=16, repeats=2)
    two = bench.memory_bandwidth(size_mb=16, repeats=2, threads=2)
    for rate in (one, two):
        assert math.isfinite(rate) and 1e8 < rate < 1e13  # 0.1 GB/s .. 10 TB/s
    with pytest.raises(BadParameter):
        bench.memory_bandwidth(threads=0)


def test_random_tokens_are_seeded_and_never_special(starter_path):
    import llama_cpp

    model = load("smollm2:135m", n_ctx=64, n_threads=1, quiet=True)
    a, b = bench.Decoder(model, seed=7), bench.Decoder(model, seed=7)
    toks = a.tokens(200)
    assert toks == b.tokens(200) and toks != bench.Decoder(model, seed=8).tokens(200)
    vocab = model.vocab
    assert all(llama_cpp.llama_vocab_get_attr(vocab, t) & llama_cpp.LLAMA_TOKEN_ATTR_NORMAL
               for t in toks)
    assert model.llm.token_eos() not in toks


def test_measuring_leaves_the_engine_as_it_was():
    model = load("smollm2:135m", n_ctx=128, n_threads=1, quiet=True)
    before = model.generate("The capital of France is", max_tokens=8,
                            temperature=0, seed=1).text
    res = bench.measure(model, "pp", 16, reps=1)
    assert res["n_cached"] == 16 and res["test"] == "pp16"
    after = model.generate("The capital of France is", max_tokens=8,
                           temperature=0, seed=1).text
    assert after == before
    with pytest.raises(KitError, match="'pp' or 'tg'"):
        bench.measure(model, "xx", 4)


def test_bench_forgets_the_models_it_loaded():
    before = set(_LOADED)
    bench.run_bench("smollm2:135m", threads=[1], n_prompt=4, n_gen=0, reps=1,
                    measure_bandwidth=False, quiet=True)
    assert set(_LOADED) == before


@pytest.mark.parametrize("kw", [{"n_prompt": -1}, {"n_gen": 1.5}, {"reps": 0},
                                {"n_prompt": 0, "n_gen": 0}])
def test_bad_settings_are_refused_before_loading(kw):
    with pytest.raises(BadParameter):
        bench.run_bench("smollm2:135m", **{**TINY, **kw})


@no_gpu
def test_gpu_layers_on_a_cpu_build_is_a_clear_no():
    with pytest.raises(NoGpuSupport) as err:
        bench.run_bench("smollm2:135m", gpu_layers="0,all", **TINY)
    msg = str(err.value)
    assert "without GPU support" in msg and "-DGGML_CUDA=on" in msg
    assert "gpu_fallback" not in msg  # not an option of run_bench


@no_gpu
def test_load_refuses_gpu_layers_unless_told_to_fall_back(capsys):
    with pytest.raises(NoGpuSupport, match="gpu_fallback=True"):
        load("smollm2:135m", n_ctx=64, n_gpu_layers=-1, quiet=True)
    model = load("smollm2:135m", n_ctx=64, n_gpu_layers=-1, gpu_fallback=True)
    assert not model.on_gpu
    assert "no GPU support" in capsys.readouterr().out


def test_json_and_csv_round_trip(sweep, tmp_path):
    data = json.loads(bench.to_json(sweep, tmp_path / "r.json"))
    assert len(data["rows"]) == len(sweep) and data["meta"]["llama_cpp_python"]
    back = bench.load_results(tmp_path / "r.json")
    assert back["tps_mean"].tolist() == pytest.approx(sweep["tps_mean"].tolist())
    assert back.attrs["meta"]["date"] == sweep.attrs["meta"]["date"]
    bench.to_csv(sweep, tmp_path / "r.csv")
    csv = bench.load_results(tmp_path / "r.csv")
    assert csv["test"].tolist() == sweep["test"].tolist()
    assert not list(tmp_path.glob("*.partial"))


def test_a_file_that_is_not_results_says_how_to_make_one(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"something": 1}')
    with pytest.raises(KitError, match="kit bench"):
        bench.load_results(bad)


def test_recorded_h100_figures_are_complete():
    df = bench.recorded_results()  # package data: works from any folder
    meta = df.attrs["meta"]
    assert "H100" in meta["gpus"][0] and meta["llama_cpp_python"] == "0.3.36"
    main = df[df.test.isin(["pp128", "tg64"])]
    assert len(main) == 5 * 4 * 2  # threads 1,2,4,8,16 x layers 0,8,16,all
    assert set(main.gpu_layers) == {0, 8, 16, -1}
    assert (main[main.gpu_layers != 0].backend == "GPU").all()
    assert (main.n_cached == main.n_tokens).all()
    tg = main[main.test == "tg64"].set_index(["threads", "gpu_layers"])["tps_mean"]
    for t in (1, 2, 4, 8, 16):  # every layer moved to the GPU helped
        assert tg[(t, -1)] > tg[(t, 0)]


def test_recorded_figures_unknown_name_says_which_exist():
    with pytest.raises(KitError, match="gpu_h100_starter"):
        bench.recorded_results("gpu_nope")


def kit(*args):
    return subprocess.run([sys.executable, "-m", "kit", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_cli_json_and_csv(tmp_path):
    out = kit("bench", "smollm2:135m", "--threads", "1", "--pp", "8", "--tg", "4",
              "--reps", "1", "--no-bandwidth", "--json", "--csv", str(tmp_path / "b.csv"))
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["rows"]
    assert [r["test"] for r in rows] == ["pp8", "tg4"]
    assert (tmp_path / "b.csv").read_text().startswith("model,quantization,")


def test_cli_table_and_bad_input():
    out = kit("bench", "--threads", "1", "--pp", "4", "--tg", "0", "--reps", "1",
              "--no-bandwidth")
    assert out.returncode == 0, out.stderr
    assert "smollm2:135m" in out.stdout and "pp4" in out.stdout and "TOK/S" in out.stdout
    bad = kit("bench", "--threads", "one")
    assert bad.returncode == 1 and bad.stderr.startswith("Error:") and "1,2" in bad.stderr
    if not gpu_offload_supported():
        gpu = kit("bench", "--gpu-layers", "all", "--reps", "1")
        assert gpu.returncode == 1 and "-DGGML_CUDA=on" in gpu.stderr
