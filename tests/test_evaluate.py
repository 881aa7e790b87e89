"""Perplexity, KL divergence and top-token agreement, on the real starter model."""
import json
import math
import os
import subprocess
import sys

import llama_cpp
import pytest

from kit.errors import BadParameter, EvalTextTooShort
from kit.evaluate import (EVAL_TEXT, evaluate, format_table, generation_speed,
                          load_eval_text, perplexity, scored)
from kit.quantize import quantize
from kit.models.registry import register

ORDER = ["q8_0", "q5_k_m", "q4_k_m", "q2_k"]
# One thread: on a shared, busy CPU llama.cpp's waiting threads spin and a
# second thread costs more than it gives (the results are the same).
ONE = dict(threads=1, quiet=True)


@pytest.fixture(scope="module")
def home(tmp_path_factory, starter_path):
    """A private KIT_HOME with the starter and four llama.cpp variants of it."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("eval-home")
    mp.setenv("KIT_HOME", str(path))
    register("smollm2:135m", starter_path, source="test")
    quantize("smollm2:135m", ORDER, quiet=True)
    yield path
    mp.undo()


def naive_perplexity(path, text: str, n_ctx: int, n_windows: int) -> float:
    """llama.cpp's recipe, spelled out in plain Python, one fresh model per window."""
    total, count = 0.0, 0
    for i in range(n_windows):
        llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                              n_threads=1, n_threads_batch=1, logits_all=True,
                              verbose=False)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        tokens = llm.tokenize(text.encode(), add_bos=True, special=False)
        window = tokens[i * n_ctx:(i + 1) * n_ctx]
        if llama_cpp.llama_vocab_get_add_bos(vocab):
            window[0] = llm.token_bos()
        llm.eval(window)
        for j in range(n_ctx // 2, n_ctx - 1):  # the second half predicts j + 1
            logits = llm.scores[j].tolist()
            top = max(logits)
            log_sum = top + math.log(math.fsum(math.exp(v - top) for v in logits))
            total += log_sum - logits[window[j + 1]]
            count += 1
        llm.close()
    return math.exp(total / count)


def test_bundled_text_is_long_enough_and_says_its_source():
    text = load_eval_text()
    assert text.startswith("THE SONNETS\nby William Shakespeare")
    assert "Shall I compare thee to a summer's day?" in text
    assert "public domain" in (EVAL_TEXT.parent / "README.md").read_text()


def test_scored_positions_are_the_second_half():
    assert scored(512) == slice(256, 511)  # 255 tokens, as llama.cpp scores


def test_perplexity_matches_a_naive_computation(starter_path):
    text = load_eval_text()[:1500]  # about 420 tokens: 3 windows of 128
    ours = evaluate([], reference=str(starter_path), text=text, n_ctx=128,
                    max_windows=2, **ONE)[0]
    assert ours.n_windows == 2 and ours.n_scored == 2 * 63
    want = naive_perplexity(starter_path, text, 128, 2)
    assert ours.perplexity == pytest.approx(want, rel=1e-4)
    assert 5 < ours.perplexity < 500  # a real English text, a real model


def test_kl_of_a_model_against_itself_is_zero(starter_path):
    rows = evaluate([str(starter_path)], reference=str(starter_path), n_ctx=64,
                    max_windows=2, **ONE)
    ref, again = rows
    assert ref.is_reference and not again.is_reference
    assert again.kl_divergence == pytest.approx(0, abs=1e-9)
    assert again.top_token_agreement == 1.0
    assert again.perplexity == pytest.approx(ref.perplexity, rel=1e-9)


def test_sizes_shrink_and_kl_grows_down_the_ladder(home):
    rows = evaluate([f"smollm2:135m-{q}" for q in ORDER], reference="smollm2:135m",
                    n_ctx=128, max_windows=2, **ONE)
    ref, by = rows[0], {r.name.split("-")[-1]: r for r in rows[1:]}
    assert ref.name == "smollm2:135m" and ref.kl_divergence == 0
    sizes = [by[q].size for q in ORDER]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 4
    kl = {q: by[q].kl_divergence for q in ORDER}
    assert 0 < kl["q8_0"] < kl["q5_k_m"] < kl["q2_k"]
    assert kl["q8_0"] < kl["q4_k_m"] < kl["q2_k"]
    assert kl["q2_k"] > 5 * kl["q8_0"]
    agree = {q: by[q].top_token_agreement for q in ORDER}
    assert agree["q8_0"] > agree["q4_k_m"] > agree["q2_k"]
    assert by["q2_k"].perplexity > by["q8_0"].perplexity
    table = format_table(rows)
    assert "smollm2:135m-q2_k" in table and "ref" in table and "Q4_K_M" in table


def test_reference_defaults_to_the_most_bits_per_weight(home):
    rows = evaluate(["smollm2:135m-q2_k", "smollm2:135m-q8_0"], n_ctx=64,
                    max_windows=1, **ONE)
    assert [r.name for r in rows] == ["smollm2:135m-q8_0", "smollm2:135m-q2_k"]
    assert rows[1].reference == "smollm2:135m-q8_0"


def test_the_original_is_the_reference_over_its_requantized_copies(home):
    rows = evaluate(["smollm2:135m-q8_0", "smollm2:135m"], n_ctx=64,
                    max_windows=1, **ONE)  # q8_0 has more bits, but was made from it
    assert [r.name for r in rows] == ["smollm2:135m", "smollm2:135m-q8_0"]
    assert rows[1].reference == "smollm2:135m"


def test_generation_speed_is_measured(home):
    assert generation_speed("smollm2:135m-q8_0", n_tokens=8) > 0


def test_text_shorter_than_one_window_is_refused(starter_path):
    with pytest.raises(EvalTextTooShort) as err:
        perplexity(str(starter_path), text="Shall I compare thee to a summer's day?",
                   n_ctx=512)
    assert "shorter than one window of 512 tokens" in str(err.value)
    assert err.value.n_tokens < 20
    with pytest.raises(BadParameter, match="max_windows"):
        perplexity(str(starter_path), n_ctx=64, max_windows=0)


def test_cli_eval_table_and_json(home):
    env = {**os.environ, "KIT_HOME": str(home)}

    def kit(*args):
        return subprocess.run([sys.executable, "-m", "kit", "eval", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    out = kit("smollm2:135m-q8_0", "smollm2:135m-q2_k", "--ctx", "64", "--windows",
              "1", "--json", "--threads", "1")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["name"] for r in rows] == ["smollm2:135m-q8_0", "smollm2:135m-q2_k"]
    assert rows[0]["is_reference"] and rows[1]["kl_divergence"] > 0
    assert rows[1]["n_scored"] == 31 and rows[1]["size_mb"] > 80
    table = kit("smollm2:135m-q2_k", "--ctx", "64", "--windows", "1", "--threads",
                "1")
    assert table.returncode == 0 and "PPL" in table.stdout
    short = kit("smollm2:135m", "--ctx", "8192")
    assert short.returncode == 1 and "shorter than one window" in short.stderr
