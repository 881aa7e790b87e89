"""Fine-tuning (kit.finetune, kit.engines.llama_train): a real training run of
the starter at a tiny size, the native layout check, and each bad input."""
from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys

import pytest

from kit import errors
from kit.engines import llama_train as lt
from kit.finetune import (ask, bundled, check_model, finetune, float_copy, plan,
                          prepare, read_data, split_windows)
from kit.models.registry import installed

TINY = dict(epochs=2, lr=1e-4, n_ctx=256, max_tokens=2 * 257, progress=False,
            quiet=True)  # one training window seen twice, one held out


@pytest.fixture(scope="module")
def trained(starter_path):
    """One real training run, shared by the tests below; removed afterwards."""
    from kit.models.pull import remove

    run = finetune("smollm2:135m", bundled("library"), label="test", **TINY)
    yield run
    for name in ("smollm2:135m-ft-test", "smollm2:135m-ft-test-q8_0"):
        if name in installed():
            remove(name)


# ---- the native declarations ----------------------------------------------------

def test_training_declarations_match_the_installed_llama_cpp_python():
    """Fails loudly when llama-cpp-python changes what these declarations assume."""
    assert lt.check_layout() is None, (
        f"kit/engines/llama_train.py no longer matches: {lt.check_layout()}. "
        "Read llama.h's struct llama_opt_params and ggml-opt.h before updating.")
    assert [f[0] for f in lt.OptParams._fields_][-1] == "optimizer_type"
    assert ctypes.sizeof(lt.OptParams) == 48  # 6 fields, passed by value
    assert lt.CONSTANT_PARAMS.value  # llama.cpp's own learning-rate callback


def test_constant_optimizer_params_round_trip_through_llama_cpp():
    p = lt.optimizer_params(3e-5, weight_decay=0.01)
    back = lt.fn["ggml_opt_get_constant_optimizer_params"](ctypes.byref(p))
    assert back.adamw.alpha == pytest.approx(3e-5)
    assert back.adamw.wd == pytest.approx(0.01)
    assert 0.8 < back.adamw.beta1 < 1  # llama.cpp's defaults kept


def test_an_unchecked_version_switches_training_off(monkeypatch):
    import llama_cpp

    monkeypatch.setattr(llama_cpp, "__version__", "9.9.9")
    problem = lt.check_layout()
    assert "9.9.9" in problem
    monkeypatch.setattr(lt, "PROBLEM", problem)
    with pytest.raises(errors.TrainingUnavailable, match="pip install"):
        lt.ensure_supported()


# ---- data ---------------------------------------------------------------------

def test_windows_overlap_by_half_and_the_held_out_tail_is_never_trained():
    tokens = list(range(1000))
    train, held = split_windows(tokens, 128)
    assert all(len(w) == 129 for w in train + held)
    assert train[1][0] - train[0][0] == 64
    first_held = held[0][0]
    assert max(w[-1] for w in train) == first_held - 1  # up to the tail, not into it
    with pytest.raises(errors.TrainingDataTooShort, match="at least 258"):
        split_windows(list(range(200)), 128)


def test_question_answer_pairs_use_the_models_own_template(starter_path):
    p = prepare("smollm2:135m", bundled("library-qa"), system="Library help desk.")
    assert p.kind == "chat" and p.n_examples == 20
    assert p.first_text.startswith("<|im_start|>system\nLibrary help desk.<|im_end|>")
    assert "<|im_start|>assistant\nOn Sunday" in p.first_text
    assert p.first_text.rstrip().endswith("<|im_end|>")  # no empty turn after it
    im_start = 1  # <|im_start|> is one special token in SmolLM2's vocabulary
    assert p.tokens.count(im_start) == 3 * 20


@pytest.mark.parametrize("content,why", [
    (b"GGUF\x03\x00\x00\x00" + b"\x00" * 64, "binary"),
    (b"caf\xe9 au lait, not UTF-8", "not UTF-8"),
    (b"   \n", "empty"),
    (b'[{"q": "no answer key"}]', "question"),
])
def test_non_text_data_is_refused_with_the_reason(tmp_path, content, why):
    f = tmp_path / ("data.json" if content.startswith(b"[") else "data.txt")
    f.write_bytes(content)
    with pytest.raises(errors.NotTextData, match=why):
        read_data(f)


# ---- refusals before any work -----------------------------------------------------

def test_data_too_short_for_one_window(starter_path, tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("The library opens at nine.")
    with pytest.raises(errors.TrainingDataTooShort, match="--ctx"):
        finetune("smollm2:135m", f, label="short", **{**TINY, "max_tokens": None})
    assert "smollm2:135m-ft-short" not in installed()


def test_far_too_long_is_refused_with_the_estimate(starter_path):
    with pytest.raises(errors.TrainingTooLong, match="max_minutes=None"):
        finetune("smollm2:135m", bundled(), label="long", epochs=500,
                 max_minutes=1, quiet=True)


def test_too_big_for_memory_is_refused_with_the_arithmetic(starter_path, monkeypatch):
    monkeypatch.setattr("kit.machine.machine_facts", lambda: {
        "ram_available": 1_000_000_000, "cores_logical": 2})
    p = plan("smollm2:135m", prepare("smollm2:135m", bundled()), 256, 1, 2)
    assert "4 copies x 4 bytes x 135 M weights = 2.2 GB" in p.explain()
    with pytest.raises(errors.TrainingWontFit, match="GB needed, 1.0 GB available"):
        finetune("smollm2:135m", bundled(), label="big", **TINY)


def test_an_unsupported_architecture_is_refused_before_loading(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "tiny-bert.gguf"
    w = gguf.GGUFWriter(path, "bert")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(errors.UnsupportedArchitecture, match="bert.*llama"):
        check_model(path)


def _hold_lock(lock):
    """Another process that holds the lock (as a running training does)."""
    code = ("import sys, time; from pathlib import Path; "
            "from kit.finetune_guard import claim; "
            "claim(Path(sys.argv[1]), 'x'); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(lock)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_training_on_the_same_name_is_refused(starter_path):
    from kit.quantize import output_path

    dst = output_path("smollm2:135m", "ft-busy")
    lock = dst.with_name(dst.name + ".lock")
    holder = _hold_lock(lock)
    try:
        with pytest.raises(errors.TrainingInProgress, match=str(holder.pid)):
            finetune("smollm2:135m", bundled(), label="busy", **TINY)
    finally:
        holder.kill()
        holder.wait()
    assert lock.exists()  # killed: its lock file is still there...
    (dst.parent / (dst.name + ".partial")).write_bytes(b"half a model")
    from kit.finetune_guard import claim, release, remove_leftovers

    fd = claim(lock, "x")  # ...but the lock died with it: taken over
    assert lock.read_text() == str(os.getpid())
    assert [p.name for p in remove_leftovers(dst)] == [dst.name + ".partial"]
    release(lock, fd)
    assert not lock.exists()


def test_a_killed_training_leaves_nothing_that_blocks_the_next(starter_path, tmp_path):
    """A run killed mid-training (SIGKILL: no Python cleanup) does not block
    the same name: the next run takes over and removes its leftovers."""
    import signal
    import time

    from kit.quantize import output_path

    code = ("import kit.finetune as ft, kit.engines.llama_train as lt, time\n"
            "real = lt.run_epoch\n"
            "def slow(*a):\n"
            "    print('step', flush=True); time.sleep(60)\n"
            "lt.run_epoch = slow\n"
            "ft.finetune('smollm2:135m', ft.bundled(), label='killed', epochs=1,"
            " max_tokens=514, progress=False, quiet=True, force=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "step"  # training has started
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    dst = output_path("smollm2:135m", "ft-killed")
    lock = dst.with_name(dst.name + ".lock")
    assert lock.exists()
    run = finetune("smollm2:135m", bundled(), label="killed", force=True, **{
        **TINY, "epochs": 1})
    try:
        assert not lock.exists() and run.path.is_file()
    finally:
        from kit.models.pull import remove

        remove(run.name)


# ---- every setting checked before llama.cpp sees it -------------------------------

@pytest.mark.parametrize("setting,value,allowed", [
    ("lr", float("nan"), "from 1e-08 to 0.01"), ("lr", 0.0, "from 1e-08"),
    ("lr", -1.0, "from 1e-08"), ("lr", float("inf"), "to 0.01"), ("lr", 1e9, "to 0.01"),
    ("epochs", 0, "from 1 to 1000"), ("epochs", 2.5, "whole number"),
    ("epochs", True, "whole number"), ("n_ctx", 0, "from 1 to 4096"),
    ("n_ctx", 100_000, "to 4096"), ("threads", 0, "from 1"),
    ("label", "../../etc", "letters, digits"), ("label", "", "letters"),
    ("max_tokens", -5, "from 2"), ("max_minutes", float("nan"), "above 0"),
])
def test_each_bad_setting_is_refused_before_anything_runs(setting, value, allowed,
                                                          starter_path, monkeypatch):
    import kit.finetune as ft

    def never(*a, **k):
        raise AssertionError("the data was read before the settings were checked")

    monkeypatch.setattr(ft, "read_data", never)
    with pytest.raises(errors.BadParameter, match=f"{setting}=.*{re.escape(allowed)}"):
        finetune("smollm2:135m", bundled(), **{**TINY, "label": "bad",
                                               setting: value})
    from kit.quantize import output_path

    assert not list(output_path("smollm2:135m", "ft-bad").parent.glob("*ft-bad*"))


@pytest.mark.parametrize("lr", ["nan", "0", "-1", "inf", "1e9"])
def test_cli_refuses_a_bad_learning_rate_without_crashing(lr, starter_path):
    """Run as a real process: llama.cpp's GGML_ASSERT would abort it (exit 134)."""
    done = subprocess.run([sys.executable, "-m", "kit.cli", "finetune", "smollm2:135m",
                           "--data", str(bundled()), "--lr", lr, "--label", "cli-lr"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "lr=" in done.stderr and "from 1e-08 to 0.01" in done.stderr
    assert "GGML_ASSERT" not in done.stderr and "Training would" not in done.stdout


def test_a_context_that_is_rounded_up_says_so(starter_path):
    p = plan("smollm2:135m", prepare("smollm2:135m", bundled()), n_ctx=100, epochs=1)
    assert p.n_ctx == 256
    assert "256 tokens each (n_ctx 100 rounded up" in p.explain()
    assert "(n_ctx" not in plan("smollm2:135m", prepare("smollm2:135m", bundled()),
                                n_ctx=256, epochs=1).explain()


def test_a_large_file_gets_its_estimate_before_it_is_tokenized(starter_path, tmp_path,
                                                               capsys, monkeypatch):
    """30 MB of text: the estimate (and the refusal) come from samples; the
    whole file is never tokenized (that took minutes)."""
    import kit.finetune as ft

    big = tmp_path / "big.txt"
    block = bundled().read_text()
    with open(big, "w") as f:
        for _ in range(30_000_000 // len(block)):
            f.write(block)
    monkeypatch.setattr(ft, "prepare", lambda *a, **k: pytest.fail("tokenized it all"))
    with pytest.raises(errors.TrainingTooLong, match="more than the 30 minutes"):
        finetune("smollm2:135m", big, label="big")
    out = capsys.readouterr().out
    assert "A large text (30.0 M characters, about" in out
    assert "tokens from samples" in out and "Time: about" in out
    from kit.finetune_guard import estimate_tokens

    from kit.engines import load

    llm = load("smollm2:135m", quiet=True).llm
    text = block * 200
    exact = len(llm.tokenize(text.encode(), add_bos=True))
    assert abs(estimate_tokens(llm, text, sample=40_000) - exact) < 0.05 * exact


def test_the_measured_time_is_said_and_a_run_far_over_the_limit_stops(monkeypatch):
    import kit.finetune_guard as guard

    now = [100.0]
    monkeypatch.setattr(guard.time, "perf_counter", lambda: now[0])
    said = []
    clock = guard.StepClock(total_steps=40, extra_steps=2, estimate_s=60,
                            max_minutes=10, say=said.append)
    for step in (1, 2):
        now[0] += 5
        clock(step, 2.0)
    assert said == []  # not measured yet
    now[0] += 5
    clock(3, 2.0)  # 5 s per step: 42 steps = 210 s, under the 10 minutes
    assert said == ["Measured: 5.0 s per step, so about 3.5 min in all, 3.2 min left "
                    "(estimated before: 60 s)."]
    slow = guard.StepClock(40, 2, 60, max_minutes=1, say=said.append)
    now[0] += 30
    with pytest.raises(errors.TrainingTooLong, match="measured over 3 steps"):
        slow(3, 2.0)  # 10 s per step: 7 min, far over 1 minute


# ---- the real thing -----------------------------------------------------------------

def test_float_copy_keeps_metadata_and_the_weights(starter_path):
    import gguf
    import numpy as np

    from kit.quantize import read_weights

    path = float_copy("smollm2:135m", quiet=True)
    src, dst = gguf.GGUFReader(starter_path), gguf.GGUFReader(path)
    keys = lambda r: {k for k in r.fields if not k.startswith("GGUF.")}  # noqa: E731
    assert keys(src) == keys(dst)
    assert dst.fields["tokenizer.chat_template"].contents() == \
        src.fields["tokenizer.chat_template"].contents()
    assert {t.tensor_type.name for t in dst.tensors} == {"F32"}
    q = next(t for t in dst.tensors if t.name == "blk.0.attn_q.weight")
    np.testing.assert_array_equal(np.asarray(q.data).reshape(576, 576),
                                  read_weights("smollm2:135m", "blk.0.attn_q.weight"))


def test_training_lowers_the_loss(trained):
    assert len(trained.step_losses) == 2 and len(trained.eval_losses) == 3
    assert trained.step_losses[1] < trained.step_losses[0]  # the same window, again
    assert trained.eval_losses[-1] < trained.eval_losses[0]  # held out, too


def test_the_trained_model_is_registered_keeps_its_metadata_and_answers(trained):
    from kit.modelfile import read_facts

    assert trained.name == "smollm2:135m-ft-test"
    entry = installed()[trained.name]
    assert entry["source"] == "finetune" and entry["base"] == "smollm2:135m"
    facts = read_facts(trained.path)
    assert facts.has_chat_template and facts.context_length == 8192  # not 256
    [answer] = ask(trained.name, ["When is the library open on Sunday?"], max_tokens=16)
    assert answer.strip()
    for leftover in (".partial", ".trained", ".lock"):
        assert not trained.path.with_name(trained.path.name + leftover).exists()


def test_the_same_output_name_again_is_refused(trained):
    with pytest.raises(errors.OutputExists, match="kit rm smollm2:135m-ft-test"):
        finetune("smollm2:135m", bundled(), label="test", **TINY)


def test_an_interrupted_run_leaves_no_file_and_no_name(trained, monkeypatch):
    real, calls = lt.run_epoch, []

    def stop_on_the_first_training_step(ctx, data, train, evaluate, n_train):
        calls.append(n_train)
        if n_train:  # 0 = an evaluation pass
            raise KeyboardInterrupt
        return real(ctx, data, train, evaluate, n_train)

    monkeypatch.setattr(lt, "run_epoch", stop_on_the_first_training_step)
    with pytest.raises(KeyboardInterrupt):
        finetune("smollm2:135m", bundled(), label="stopped", **TINY)
    assert calls == [0, 1]
    assert "smollm2:135m-ft-stopped" not in installed()
    folder = trained.path.parent
    assert not [p.name for p in folder.iterdir() if "ft-stopped" in p.name]


def test_cli_refuses_with_a_clear_message(starter_path, tmp_path, capsys):
    from kit.cli import main

    f = tmp_path / "model.txt"
    f.write_bytes(b"\x00\x01binary")
    assert main(["finetune", "smollm2:135m", "--data", str(f)]) == 1
    err = capsys.readouterr().err
    assert "cannot be training data" in err and ".jsonl" in err


def test_bundled_general_knowledge_has_ten_questions():
    items = json.loads(bundled("general").read_text())
    assert len(items) == 10 and all(i["accept"] for i in items)


def test_retention_counts_whole_answers_only(monkeypatch):
    import kit.finetune as ft

    items = json.loads(bundled("general").read_text())
    answers = ["It is Paris."] + ["I do not know."] * 9
    answers[6] = "A spider has 80 legs."  # "8" inside "80" is not eight
    answers[7] = "Water freezes at -18.0°C."  # nor is the 0 of 18.0
    answers[2] = "There are 7 days."
    monkeypatch.setattr(ft, "ask", lambda model, qs, **kw: answers[:len(qs)])
    score, rows = ft.retention("any")
    assert score == 2 and len(rows) == len(items)


def test_cli_prints_the_estimate_and_refuses_a_run_far_too_long(starter_path, capsys):
    from kit.cli import main

    code = main(["finetune", "smollm2:135m", "--data", str(bundled()),
                 "--epochs", "400", "--max-minutes", "1", "--label", "cli"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "Memory: 4 copies x 4 bytes" in out and "Time: about" in out
    assert "more than the 1 minutes allowed" in err and "--yes" in err
    assert "smollm2:135m-ft-cli" not in installed()
