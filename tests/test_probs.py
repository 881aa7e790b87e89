"""Next-token probabilities (kit.probs) on the real starter model, checked
against what llama.cpp itself computes and samples."""
import math
from collections import Counter

import llama_cpp
import numpy as np
import pytest

from kit.engines import load
from kit.errors import BadTopCount
from kit.probs import join_pieces, log_softmax, readable, reshape, to_html

PROMPT = "My favourite colour is"
GREEDY = dict(temperature=0, repeat_penalty=1.0)


@pytest.fixture(scope="module")
def model():
    return load("smollm2:135m", n_ctx=512, n_threads=2, quiet=True)


def test_next_tokens_are_the_softmax_of_llama_cpps_logits(model):
    top = model.next_tokens("The capital of France is", k=5)
    logp = log_softmax(model.logits("The capital of France is"))
    assert [c.id for c in top] == list(np.argsort(-logp)[:5])
    assert top[0].text == " Paris" and top[0].prob > 0.3
    for c in top:
        assert c.logprob == pytest.approx(logp[c.id]) and c.prob == pytest.approx(
            math.exp(c.logprob))
    assert all(a.prob >= b.prob for a, b in zip(top, top[1:]))


# Two evaluations of the same tokens can differ in the last bits when the
# prompt is read in other batches (llama.cpp picks its matrix kernels by batch
# size and processor: up to ~0.15 in a logit was seen on an AVX2 machine).
# A tolerance of 0.5 keeps that apart from a different prompt, which moves
# logits by several units (the check below makes sure of it).
SAME_PROMPT_ATOL = 0.5


def test_messages_get_the_chat_template(model):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    as_chat = model.logits(messages)
    by_ids = model.logits(model.chat_tokens(messages))
    assert np.allclose(as_chat, by_ids, atol=SAME_PROMPT_ATOL)
    assert list(np.argsort(-as_chat)[:5]) == list(np.argsort(-by_ids)[:5])
    plain = model.logits(messages[0]["content"])  # no template: another prompt
    assert np.abs(as_chat - plain).max() > 10 * SAME_PROMPT_ATOL


def test_greedy_generation_takes_the_top_candidate_each_step(model):
    prompt = "The capital of France is"
    plain = model.generate(prompt, max_tokens=8, **GREEDY).text
    stream = model.generate(prompt, max_tokens=8, logprobs=True, top_logprobs=3, **GREEDY)
    assert stream.text == plain  # probabilities change nothing in the answer
    assert len(stream.logprobs) == stream.stats.generated_tokens == 8
    assert "".join(t.text for t in stream.logprobs) == plain
    first = model.next_tokens(prompt, k=3)
    assert [c.id for c in stream.logprobs[0].top] == [c.id for c in first]
    for t in stream.logprobs:
        assert len(t.top) == 3 and t.id == t.top[0].id
        assert t.logprob == pytest.approx(t.top[0].logprob, abs=1e-5)
    assert stream.piece_ends[-1] == len(stream.logprobs)


def test_chat_stream_carries_probabilities_without_alternatives(model):
    stream = model.chat([{"role": "user", "content": "Say hi"}], max_tokens=5,
                        logprobs=True, seed=3)
    stream.text
    assert stream.logprobs and all(t.top == [] and 0 < t.prob <= 1
                                   for t in stream.logprobs)


@pytest.mark.parametrize("k", [0, -1, 49153, 2.5, True, "10"])
def test_bad_k_names_the_allowed_range(model, k):
    with pytest.raises(BadTopCount, match="1 to 49152"):
        model.next_tokens(PROMPT, k=k)
    with pytest.raises(BadTopCount):
        model.generate(PROMPT, top_logprobs=k if k else -1)


def llama_cpp_draws(model, settings, seed):
    """One token drawn by llama.cpp's own sampler chain over the logits the
    model last computed, built in llama-cpp-python's order (Llama._init_sampler)."""
    lib, chain = llama_cpp, None
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
    for sampler in (lib.llama_sampler_init_top_k(settings["top_k"]),
                    lib.llama_sampler_init_typical(1.0, 1),
                    lib.llama_sampler_init_top_p(settings["top_p"], 1),
                    lib.llama_sampler_init_min_p(settings["min_p"], 1),
                    lib.llama_sampler_init_temp(settings["temperature"]),
                    lib.llama_sampler_init_dist(seed)):
        lib.llama_sampler_chain_add(chain, sampler)
    try:
        return lib.llama_sampler_sample(chain, model.llm.ctx, -1)
    finally:
        lib.llama_sampler_free(chain)


SETTINGS = [
    dict(temperature=1.5, top_k=40, top_p=0.9, min_p=0.02),
    dict(temperature=0.7, top_k=3, top_p=1.0, min_p=0.0),
    dict(temperature=1.0, top_k=0, top_p=0.5, min_p=0.0),
    dict(temperature=2.0, top_k=0, top_p=1.0, min_p=0.1),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_reshape_matches_what_llama_cpp_samples(model, settings):
    shaped = reshape(model.logits(PROMPT), **settings)
    kept = {int(i): float(p) for i, p in zip(shaped.order[: shaped.kept],
                                             shaped.final_p[: shaped.kept])}
    assert sum(kept.values()) == pytest.approx(1.0)
    n = 200
    drawn = Counter(llama_cpp_draws(model, settings, seed) for seed in range(n))
    assert set(drawn) <= set(kept), "llama.cpp drew a token the kit calls removed"
    for token, p in kept.items():  # each frequency within 4 standard errors
        assert abs(drawn[token] / n - p) <= 4 * math.sqrt(p * (1 - p) / n) + 0.01


def test_the_kits_generate_draws_only_kept_tokens(model):
    settings = SETTINGS[1]  # top_k=3: three tokens at most, over 30 seeds
    shaped = reshape(model.logits(PROMPT), **settings)
    kept = set(shaped.order[: shaped.kept].tolist())
    for seed in range(30):
        stream = model.generate(PROMPT, max_tokens=1, seed=seed, repeat_penalty=1.0,
                                logprobs=True, **settings)
        stream.text
        assert stream.logprobs[0].id in kept


def test_temperature_zero_keeps_only_the_best(model):
    shaped = reshape(model.logits(PROMPT), temperature=0)
    assert shaped.kept == 1 and shaped.final_p[0] == 1.0
    stream = model.generate(PROMPT, max_tokens=1, logprobs=True, **GREEDY)
    stream.text
    assert stream.logprobs[0].id == shaped.order[0]


def test_filters_order_and_reasons():
    logits = np.log(np.array([0.5, 0.3, 0.1, 0.06, 0.04]))
    shaped = reshape(logits, temperature=1.0, top_k=4, top_p=0.85, min_p=0.25)
    # top_k drops id 4; top_p keeps 0.5+0.3+0.1 (renormalised); min_p drops 0.1 < 0.125
    assert shaped.kept == 2 and shaped.removed_by == {4: "top_k", 3: "top_p", 2: "min_p"}
    assert shaped.final_p[:2] == pytest.approx([0.625, 0.375])
    hot = reshape(logits, temperature=2.0, top_k=0, top_p=1.0, min_p=0.0)
    assert hot.final_p[4] > shaped.model_p[4]  # a higher temperature flattens
    assert hot.draw(np.random.default_rng(0)) in range(5)


def test_split_characters_stay_readable(model):
    assert readable(b"caf\xc3") == "caf<0xC3>" and readable("é".encode()) == "é"
    smile = "🙂".encode()
    groups = join_pieces([b"I ", smile[:2], smile[2:], b"!"])
    assert groups == [("I ", [0]), ("🙂", [1, 2]), ("!", [3])]
    assert join_pieces([b"\xe2", b"x"]) == [("<0xE2>", [0]), ("x", [1])]
    assert join_pieces([b"a\xff"]) == [("a<0xFF>", [0])]
    # the starter's vocabulary really has tokens that are half a character
    partial = next(i for i in range(49152) if "<0x" in readable(model.token_bytes(i))
                   and model.token_bytes(i) != b"")
    assert "<0x" in readable(model.token_bytes(partial))


def test_html_colours_each_token_and_escapes(model):
    stream = model.generate("1 < 2 and", max_tokens=4, logprobs=True, **GREEDY)
    stream.text
    page = to_html(stream.logprobs, title="starter")
    assert page.count("<span") == len(join_pieces([t.bytes for t in stream.logprobs]))
    assert "hsl(" in page and "<b>starter</b>" in page
    assert "<script" not in to_html([]) and "&lt;" in to_html(
        [type(stream.logprobs[0])("<", 1, 0.5, math.log(0.5), b"<")])


# -- the explorer (kit.explore) and its widget --------------------------------
def test_explorer_steps_picks_draws_and_undoes(model):
    from kit.explore import Explorer

    ex = Explorer(model, "What is the capital of France?", k=5, seed=0)
    rows = ex.rows()
    assert len(rows) == 5 and rows[0].model_p >= rows[1].model_p
    assert sum(r.final_p for r in rows) <= 1.0 + 1e-9
    second = rows[1]
    ex.choose(second.id)  # steer: the second likeliest token, by hand
    assert ex.steps[0].id == second.id and ex.text == second.text
    assert ex.steps[0].prob == pytest.approx(second.model_p)
    ex.set(temperature=0)
    best = ex.rows()[0]
    assert ex.draw().id == best.id == ex.drawn and ex.kept() == 1
    assert ex.text == second.text + best.text and "kit-tok" in ex.text_html()
    ex.undo()
    assert ex.text == second.text and ex.drawn is None
    ex.set(temperature=1.0, top_k=2, top_p=1.0, min_p=0.0)
    assert [r.removed_by for r in ex.rows()[1:3]] == ["", "top_k"]
    with pytest.raises(Exception, match="top_p"):
        ex.set(top_p=0)


def test_token_explorer_widget_buttons_and_sliders(model):
    from kit.widgets import TokenExplorer

    w = TokenExplorer("What is the capital of France?", model=model, k=4, seed=1)
    target = w.explorer.rows()[2]
    assert w.picks[2].description.replace("␣", " ") == target.text
    w.picks[2].click()
    assert w.explorer.steps[-1].id == target.id
    assert html_text(target.text) in w.text.value
    w.sliders["top_k"].value = 1
    assert "removed by top_k" in w.bars[1].value and "removed" not in w.bars[0].value
    w.choose.click()
    assert w.explorer.steps[-1].id == w.explorer.drawn and "drew" in w.status.value
    w.undo_button.click()
    assert len(w.explorer.steps) == 1


def html_text(text):
    import html

    return html.escape(text)


def test_the_explorer_with_qwen_and_characters_in_pieces(qwen_model_path):
    """The capable model too; its byte-level vocabulary writes many characters
    in several tokens, which must join up readably."""
    from kit.explore import Explorer

    qwen = load("qwen2.5-coder:1.5b", n_ctx=256, n_threads=2, quiet=True)
    ex = Explorer(qwen, "Reply with one emoji for a sunny day, nothing else.",
                  k=5, seed=3, temperature=0)
    assert ex.rows()[0].final_p == 1.0 and len(ex.rows()) == 5
    for _ in range(4):
        ex.draw()
    assert "<0x" not in ex.text and "\ufffd" not in ex.text, ex.text
    assert ex.ended() and qwen.is_end_token(ex.steps[1].id)  # <|im_end|> after it
    rare = "𓀀🫠"  # characters its vocabulary has no single token for
    pieces = [qwen.token_bytes(t) for t in qwen.llm.tokenize(rare.encode(), add_bos=False)]
    assert any("<0x" in readable(p) for p in pieces)  # alone, a piece is bytes
    assert "".join(text for text, _ in join_pieces(pieces)) == rare
    from kit.widgets import TokenExplorer

    w = TokenExplorer("Say hi", model=qwen, k=3)
    assert w.model_pick.value == "qwen2.5-coder:1.5b"
    w.model_pick.value = "smollm2:135m"  # the dropdown swaps the model, same prompt
    assert w.explorer.model.name == "smollm2:135m" and "Loaded" in w.status.value
    assert w.explorer.prompt == "Say hi" and len(w.explorer.rows()) == 3
