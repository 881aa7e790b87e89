"""The llama.cpp engine on the real starter model."""
import threading
import time

import llama_cpp
import pytest

from kit.engines import load
from kit.errors import BadModelFile, BadParameter, ModelNotFound, PromptTooLong

GREEDY = dict(temperature=0, seed=1)


@pytest.fixture(scope="module")
def model():
    return load("smollm2:135m", n_ctx=512, n_threads=2, quiet=True)


def test_load_is_cached_per_settings(model):
    assert load("smollm2:135m", n_ctx=512, n_threads=2, quiet=True) is model
    other = load("smollm2:135m", n_ctx=256, n_threads=2, quiet=True)
    assert other is not model and other.n_ctx == 256


def test_load_says_what_it_chose(capsys):
    load("smollm2:135m", n_ctx=384, n_threads=1)
    line = capsys.readouterr().out
    assert "Loaded smollm2:135m (Q4_1, 98 MB) on CPU, 1 thread, context 384" in line


def test_greedy_generation_matches_plain_llama_cpp(model, starter_path):
    # Reference: llama-cpp-python's own completion API with the same settings.
    ref = llama_cpp.Llama(str(starter_path), n_ctx=512, n_threads=2, verbose=False)
    prompt = "The three primary colours are"
    want = ref.create_completion(prompt, max_tokens=16, temperature=0, top_k=40,
                                 top_p=0.95, min_p=0.05, repeat_penalty=1.1)
    stream = model.generate(prompt, max_tokens=16, **GREEDY)
    pieces = list(stream)
    assert len(pieces) > 1  # it streamed
    assert stream.text == want["choices"][0]["text"]
    assert stream.stats.generated_tokens == want["usage"]["completion_tokens"]
    assert stream.stats.prompt_tokens == want["usage"]["prompt_tokens"]


def test_figures_are_filled_in(model):
    stream = model.generate("Once upon a time", max_tokens=12, **GREEDY)
    stream.text
    st = stream.stats
    assert st.generated_tokens == 12 and st.stop_reason == "length"
    assert 0 < st.ttft_s <= st.total_s and st.gen_tps > 0 and st.prompt_tps > 0
    assert "12 generated" in st.line() and "max_tokens" in st.line()


def test_same_seed_same_text_different_seed_differs(model):
    kw = dict(temperature=1.0, max_tokens=24)
    a = model.generate("My favourite animal is", seed=7, **kw).text
    b = model.generate("My favourite animal is", seed=7, **kw).text
    c = [model.generate("My favourite animal is", seed=s, **kw).text for s in (8, 9, 10)]
    assert a == b
    assert any(x != a for x in c)


def test_chat_uses_the_models_template_and_ends_by_itself(model):
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = model.format_chat(msgs)
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in prompt
    assert prompt.rstrip().endswith("<|im_start|>assistant")
    stream = model.chat(msgs, max_tokens=64, **GREEDY)
    # On topic, not a fixed fact: llama-cpp-python 0.3.36's greedy answer
    # names France but no longer "Paris" (same with 1 and 2 threads).
    assert "France" in stream.text
    assert "<|im_start|>" not in stream.text
    assert stream.stats.stop_reason == "eos"
    assert "<|im_end|>" not in stream.text


def test_stop_string_cuts_the_answer(model):
    full = model.generate("1, 2, 3, 4,", max_tokens=20, **GREEDY).text
    assert " 6" in full
    cut = model.generate("1, 2, 3, 4,", max_tokens=20, stop=[" 6"], **GREEDY)
    assert cut.text == full[: full.index(" 6")]
    assert cut.stats.stop_reason == "stop"


def test_prompt_longer_than_context_is_an_error(model):
    with pytest.raises(PromptTooLong) as err:
        model.generate("word " * 600, max_tokens=4).text
    assert "512" in str(err.value)


def test_context_full_is_reported_not_silent():
    small = load("smollm2:135m", n_ctx=64, quiet=True)
    stream = small.generate("Count: one two three", max_tokens=200, **GREEDY)
    stream.text
    st = stream.stats
    assert st.stop_reason == "context"
    assert st.prompt_tokens + st.generated_tokens == 64
    assert any("context window" in n for n in st.notices)


def test_cancel_from_another_thread_stops_within_a_second(model):
    # Counting never ends by itself, so only the cancel can stop it early.
    stream = model.generate("1, 2, 3, 4, 5,", max_tokens=400, **GREEDY)
    got, t0 = [], None
    for piece in stream:
        if t0 is None:  # the Stop button is pressed 0.2 s into the answer
            t0 = time.perf_counter()
            threading.Timer(0.2, stream.cancel).start()
        got.append(piece)
    assert time.perf_counter() - t0 < 1.2
    assert stream.stats.stop_reason == "cancelled"
    assert 1 < stream.stats.generated_tokens < 400


@pytest.mark.parametrize("kw", [{"temperature": -1}, {"top_p": 2}, {"max_tokens": 0}])
def test_bad_sampling_is_refused_before_generating(model, kw):
    with pytest.raises(BadParameter):
        model.generate("hi", **kw)


@pytest.mark.parametrize("kw", [{"n_ctx": 0}, {"n_threads": 0}, {"n_gpu_layers": -5}])
def test_bad_load_settings(kw):
    with pytest.raises(BadParameter):
        load("smollm2:135m", quiet=True, **kw)


def test_truncated_file_never_reaches_llama_cpp(starter_path, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(starter_path, "rb") as f:
        cut.write_bytes(f.read(60_000_000))
    with pytest.raises(BadModelFile, match="truncated"):
        load(str(cut), quiet=True)


def test_unknown_model_name():
    with pytest.raises(ModelNotFound):
        load("nope:1b", quiet=True)


def test_a_seed_does_not_stick_to_later_calls(model):
    kw = dict(temperature=1.0, max_tokens=16)
    model.generate("My favourite animal is", seed=5, **kw).text
    unseeded = {model.generate("My favourite animal is", **kw).text for _ in range(4)}
    assert len(unseeded) > 1


def test_temperature_zero_repeats_even_when_the_prompt_was_cached(model):
    runs = {model.generate("The library opens at", max_tokens=24, temperature=0).text
            for _ in range(3)}
    assert len(runs) == 1


# -- the prompt cache (kit.engines.llamacpp.LlamaCppEngine._prefill) ----------
def long_chat(model, turns=3):
    """A conversation of a few hundred tokens, answered turn by turn."""
    msgs, streams = [], []
    for i in range(turns):
        msgs.append({"role": "user", "content": "Tell me about libraries. " * 12
                     + f"Question {i + 1}: what do librarians do?"})
        s = model.chat(msgs, max_tokens=40, **GREEDY)
        msgs.append({"role": "assistant", "content": s.text})
        streams.append(s)
    return msgs, streams


def test_a_chat_turn_reads_only_what_is_new(model):
    from kit.engines.llamacpp import CHUNK

    msgs, streams = long_chat(model)
    first, third = streams[0].stats, streams[2].stats
    assert first.prompt_tokens > CHUNK
    # the shared beginning (all of turn 2's prompt, to a chunk boundary) is reused
    second_prompt = streams[1].stats.prompt_tokens
    assert third.prompt_cached == second_prompt // CHUNK * CHUNK


def test_a_cached_answer_is_the_fresh_answer_bit_for_bit(model):
    """Greedy and seeded answers are the same with the cache and without it:
    the reused work was done in the same chunks a fresh start reads."""
    msgs, streams = long_chat(model)
    again = model.chat(msgs[:-1], max_tokens=40, **GREEDY)  # reuses turn 3's work
    again.text
    assert again.stats.prompt_cached > 0
    fresh = model.chat(msgs[:-1], max_tokens=40, cache=False, **GREEDY)
    fresh.text
    assert fresh.stats.prompt_cached == 0
    assert again.text == fresh.text == streams[2].text
    seeded = dict(temperature=0.9, seed=11, max_tokens=30)
    assert model.chat(msgs[:-1], **seeded).text == model.chat(msgs[:-1], cache=False,
                                                              **seeded).text


def test_logits_do_not_depend_on_what_was_read_before(model):
    import numpy as np

    text = "The library is open from nine until five, " * 10 + "and on Sunday it"
    model.logits("Something else entirely, to fill the cache " * 8)
    after_other = model.logits(text)
    model.logits(text[:-20])  # a shared beginning, then the rest
    after_prefix = model.logits(text)
    model.cache = False
    try:
        fresh = model.logits(text)
    finally:
        model.cache = True
    assert np.array_equal(after_other, fresh) and np.array_equal(after_prefix, fresh)


def test_sampled_turns_reuse_the_last_answer_too(model):
    """Without a seed nothing repeats anyway: reuse all that is shared, the
    previous answer's tokens included (as llama-server does)."""
    msgs = [{"role": "user", "content": "Tell me a short story about a cat."}]
    first = model.chat(msgs, max_tokens=30, temperature=0.8)
    msgs += [{"role": "assistant", "content": first.text},
             {"role": "user", "content": "And then?"}]
    second = model.chat(msgs, max_tokens=5, temperature=0.8)
    second.text
    assert second.stats.prompt_cached >= first.stats.prompt_tokens + \
        first.stats.generated_tokens - 4  # detokenizing may merge a token or two


def test_cache_false_reads_everything(model):
    model.generate("The library opens at", max_tokens=4, **GREEDY).text
    s = model.generate("The library opens at nine", max_tokens=4, cache=False, **GREEDY)
    s.text
    assert s.stats.prompt_cached == 0
