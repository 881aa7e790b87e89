"""The ctransformers engine on a real model: the starter, converted by the kit."""
import hashlib
import threading

import numpy as np
import pytest

from kit.engines.ct_convert import convert, to_ctransformers
from kit.engines import load
from kit.engines.bpe import BPETokenizer, pre_split
from kit.engines.ctransformers import CTransformersEngine, can_run, probe
from kit.errors import EngineCannotRun, KitError, NoCtransformersGpu, PromptTooLong
from kit.modelfile import read_facts, scan
from kit.models.registry import installed

GREEDY = dict(temperature=0, seed=1)
TEXTS = [
    "Hello world", "The capital of France is", "It's 2024: we'll pay $1,234.56!",
    "  leading spaces\n\nand\ttabs  \n", "Ünïcödé, naïve café, 東京, emoji 🙂 ok",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "def f(x):\n    return x**2  # square", "I'M SHOUTING, aren't you? 'quoted'",
    "numbers 3.14159 and 1e-9 and ١٢٣", "a\u00a0b \u2003c", "",
]


@pytest.fixture(scope="module")
def ct_ref():
    return to_ctransformers("smollm2:135m", quiet=True)


@pytest.fixture(scope="module")
def model(ct_ref):
    return load(ct_ref.name, engine="ctransformers", n_ctx=512, n_threads=1, quiet=True)


@pytest.fixture(scope="module")
def reference(starter_path):
    import llama_cpp

    return llama_cpp.Llama(str(starter_path), n_ctx=512, n_threads=1, verbose=False,
                           logits_all=True)


def tiny_gguf(path, arch="llama", vocab="llama", scores=True, output=True,
              byte_level=False, dtype=np.float32):
    """A minimal GGUF file with the given traits (weights are zeros).

    Apart from those traits it passes kit.gguf_check (special token ids in
    range, SentencePiece byte tokens), so what refuses it is ctransformers.
    """
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_feed_forward_length(16)
    w.add_head_count(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model(vocab)
    toks = ["<s>", "</s>", "Ġa", "Ċ" if byte_level else "\n", "b"]
    types = [3, 3, 1, 1, 1]
    if vocab == "llama":  # SentencePiece spells unknown text with these
        toks += [f"<0x{b:02X}>" for b in range(256)]
        types += [6] * 256
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    w.add_sep_token_id(1)
    if scores:
        w.add_token_scores([0.0] * len(toks))
    if vocab == "gpt2":
        w.add_token_merges(["Ġ a"])
    w.add_tensor("token_embd.weight", np.zeros((len(toks), 8), dtype=dtype))
    if output:
        w.add_tensor("output.weight", np.zeros((len(toks), 8), dtype=dtype))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# ---- refusing before loading ---------------------------------------------


def test_refuses_the_starter_with_the_reason_and_the_engine_that_can(starter_path):
    ok, why = can_run(read_facts(starter_path))
    assert not ok
    assert "tokenizer scores" in why and "llama.cpp" in why and "ct_convert" in why
    with pytest.raises(EngineCannotRun, match="llama.cpp"):
        load("smollm2:135m", engine="ctransformers", quiet=True)


@pytest.mark.parametrize("traits, reason", [
    (dict(arch="qwen2"), "architecture 'qwen2'"),
    (dict(dtype=np.float64), "F64"),
    (dict(scores=False), "tokenizer scores"),
    (dict(vocab="gpt2", byte_level=True), "GPT-2 style vocabulary"),
    (dict(output=False), "output.weight"),
    (dict(vocab="bert"), "tokenizer type 'bert'"),
])
def test_refusals_name_the_reason(tmp_path, traits, reason):
    ok, why = can_run(read_facts(tiny_gguf(tmp_path / "m.gguf", **traits)))
    assert not ok and reason in why and "engine='llamacpp'" in why


def test_a_file_that_crashes_it_is_caught_in_a_child_process(tmp_path):
    # This file passes the checks above only if we skip them: its byte-level
    # vocabulary makes the 2023 llama.cpp crash. The probe runs it elsewhere.
    bad = tiny_gguf(tmp_path / "crash.gguf", vocab="gpt2", byte_level=True)
    with pytest.raises(KitError, match="could not load .* in a test run"):
        probe(bad, "llama")
    assert threading.main_thread().is_alive()  # and we are still here


def test_gpu_layers_without_cuda_is_a_clear_no(ct_ref):
    pytest.importorskip("ctransformers")
    import shutil

    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA GPU")
    with pytest.raises(NoCtransformersGpu, match=r"ctransformers\[cuda\]"):
        load(ct_ref.name, engine="ctransformers", n_gpu_layers=4, quiet=True)


# ---- the converted copy ----------------------------------------------------


def test_copy_has_the_same_weights_and_vocabulary(ct_ref, starter_path):
    def tensors(path):
        with open(path, "rb") as f:
            out = {}
            for t in scan(path).tensors:
                f.seek(t.offset)
                out[t.name] = (t.type_name, t.shape,
                               hashlib.sha256(f.read(t.n_bytes)).hexdigest())
            return out

    a, b = tensors(starter_path), tensors(ct_ref.path)
    assert set(b) == set(a) | {"output.weight"}
    assert all(b[name] == a[name] for name in a)  # byte for byte
    assert b["output.weight"] == a["token_embd.weight"]
    old, new = scan(starter_path).metadata, scan(ct_ref.path).metadata
    assert new["tokenizer.ggml.merges"] == old["tokenizer.ggml.merges"]
    assert new["kit.tokenizer.byte_level_tokens"] == old["tokenizer.ggml.tokens"]
    assert new["tokenizer.chat_template"] == old["tokenizer.chat_template"]
    assert "\n" in new["tokenizer.ggml.tokens"] and "Ċ" not in new["tokenizer.ggml.tokens"]
    assert can_run(read_facts(ct_ref.path)) == (True, "")
    entry = installed()[ct_ref.name]
    assert entry["engine"] == "ctransformers" and entry["converted_from"] == "smollm2:135m"
    assert not list(ct_ref.path.parent.glob("*.partial"))


def test_convert_refuses_what_it_cannot_convert(tmp_path):
    src = tiny_gguf(tmp_path / "q.gguf", arch="qwen2", vocab="gpt2")
    with pytest.raises(KitError, match="llama-architecture"):
        convert(src, tmp_path / "out.gguf")
    assert not list(tmp_path.glob("out.gguf*"))  # nothing half-written


def test_pre_split_follows_gpt2_rules_with_single_digits():
    assert pre_split("It's 42 cats!") == ["It", "'s", " ", "4", "2", " cats", "!"]
    # "\s+(?!\S)" leaves the last blank for the next word: two "\n" pieces
    assert pre_split("a  b\n\nc") == ["a", " ", " b", "\n", "\n", "c"]


def test_tokenizer_matches_llama_cpp(ct_ref, reference):
    tok = BPETokenizer.from_metadata(scan(ct_ref.path).metadata)
    for text in TEXTS:
        for special in (True, False):
            want = reference.tokenize(text.encode(), add_bos=False, special=special)
            assert tok.encode(text, special=special) == want, (text, special)
        if "<|" not in text:
            assert tok.decode(tok.encode(text)) == text


# ---- it is the same model --------------------------------------------------


def test_same_next_token_choices_as_llama_cpp_on_the_original(ct_ref, reference):
    from ctransformers import AutoModelForCausalLM

    text = ("The library opens at nine in the morning. Children come to read "
            "books about animals, and the librarian helps them find stories.")
    ids = reference.tokenize(text.encode(), add_bos=False)
    reference.reset()
    reference.eval(ids)
    want = np.array(reference.scores[: len(ids)])
    ct = AutoModelForCausalLM.from_pretrained(str(ct_ref.path), model_type="llama",
                                              context_length=256, threads=1)
    got = []
    for t in ids:
        ct.eval([t])
        ptr = ct.ctransformers_llm_logits_data()  # read in place: no copy per item
        got.append(np.ctypeslib.as_array(ptr, shape=(ct.vocab_size,)).copy())
    got = np.array(got)
    agree = (got.argmax(1) == want.argmax(1)).mean()
    corr = min(np.corrcoef(g, w)[0, 1] for g, w in zip(got, want))
    assert agree >= 0.9, agree  # the same model, not garbage
    assert corr > 0.99, corr


def test_greedy_answer_matches_llama_cpp(model, reference):
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = model.format_chat(msgs)
    assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in prompt
    ids = reference.tokenize(prompt.encode(), add_bos=False, special=True)
    assert model.tokenize(prompt, special=True) == ids
    want = reference.create_completion(ids, max_tokens=8, temperature=0,
                                       repeat_penalty=1.0)["choices"][0]["text"]
    got = model.chat(msgs, max_tokens=8, temperature=0, repeat_penalty=1.0).text
    # The same tokens until the two engines meet a near-tie: with
    # llama-cpp-python 0.3.36 the 8th token is " Cit" or " Mar", 0.15 apart
    # in llama.cpp's own logits (its pick even depends on how it batches).
    w = reference.tokenize(want.encode(), add_bos=False)
    g = reference.tokenize(got.encode(), add_bos=False)
    same = next((i for i, (a, b) in enumerate(zip(w, g)) if a != b), min(len(w), len(g)))
    assert same >= 6, (got, want)
    if got != want:
        reference.reset()
        reference.eval(ids + w[:same])
        logits = reference.scores[len(ids) + same - 1]
        assert abs(logits[w[same]] - logits[g[same]]) < 0.5, (got, want)
    assert "France" in model.chat(msgs, max_tokens=48, **GREEDY).text


# ---- streaming, figures, settings --------------------------------------------


def test_streams_text_with_figures(model):
    stream = model.generate("Once upon a time", max_tokens=16, **GREEDY)
    pieces = list(stream)
    assert len(pieces) > 1 and stream.text == "".join(pieces)
    st = stream.stats
    assert st.generated_tokens == 16 and st.stop_reason == "length"
    assert st.prompt_tokens == 4
    assert 0 < st.ttft_s <= st.total_s and st.gen_tps > 0 and st.prompt_tps > 0
    assert any("min_p" in n for n in st.notices)  # said, not silently dropped


def test_seed_decides_the_sample(model):
    kw = dict(temperature=1.0, max_tokens=12)
    a = model.generate("My favourite animal is", seed=7, **kw).text
    assert model.generate("My favourite animal is", seed=7, **kw).text == a
    others = {model.generate("My favourite animal is", seed=s, **kw).text
              for s in (8, 9)}
    assert others - {a}


def test_stop_string_and_cancel(model):
    full = model.generate("1, 2, 3, 4,", max_tokens=20, **GREEDY).text
    assert " 6" in full
    cut = model.generate("1, 2, 3, 4,", max_tokens=20, stop=[" 6"], **GREEDY)
    assert cut.text == full[: full.index(" 6")] and cut.stats.stop_reason == "stop"
    stream = model.generate("Once upon a time", max_tokens=50, **GREEDY)
    for i, _ in enumerate(stream):
        if i == 2:
            stream.cancel()
    assert stream.stats.stop_reason == "cancelled" and stream.stats.generated_tokens == 3


def test_prompt_longer_than_context_is_refused(model):
    with pytest.raises(PromptTooLong, match="512"):
        model.generate("word " * 600).text


def test_load_picks_the_models_own_engine_and_says_so(ct_ref, capsys):
    m = load(ct_ref.name, n_ctx=256, n_threads=1)
    assert isinstance(m, CTransformersEngine)
    assert "ctransformers 0.2.27, CPU, 1 thread, context 256" in capsys.readouterr().out
