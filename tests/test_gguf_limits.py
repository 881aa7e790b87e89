"""kit.gguf_limits: the settings that made llama.cpp assert are refused by name.

Each case below aborted llama.cpp (SIGABRT) when it reached the loader or the
first token; tests/test_gguf_fuzz.py runs such files through the real thing.
"""
from __future__ import annotations

import pytest

from kit.gguf_check import TensorInfo
from kit.gguf_limits import problem

VOCAB = [f"<0x{b:02X}>" for b in range(256)] + ["a", "b", "ab"]


def tensor(name, shape, type_name="F32"):
    return TensorInfo(name, tuple(shape), type_name, 0, 1, 1)


def model(**changes):
    """A consistent two-block llama-like header (settings, tensors)."""
    md = {"general.architecture": "llama", "llama.block_count": 2,
          "llama.context_length": 2048, "llama.embedding_length": 64,
          "llama.attention.head_count": 4, "llama.attention.head_count_kv": 2,
          "llama.attention.layer_norm_rms_epsilon": 1e-5,
          "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": VOCAB}
    tensors = [tensor("token_embd.weight", (64, len(VOCAB)), "Q8_0"),
               tensor("output_norm.weight", (64,))]
    for i in range(2):
        tensors += [tensor(f"blk.{i}.attn_norm.weight", (64,)),
                    tensor(f"blk.{i}.attn_q.weight", (64, 64), "Q4_1"),
                    tensor(f"blk.{i}.attn_k.weight", (64, 32), "Q4_1")]
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            md.pop(key, None)
        else:
            md[key] = value
    return md, tensors


def test_a_sound_header_passes():
    assert problem(*model()) is None
    assert problem({}, []) is None  # no architecture: llama.cpp says so itself


@pytest.mark.parametrize("changes, words", [
    ({"llama__block_count": 0}, "block_count is 0"),
    ({"llama__block_count": 1000}, "block_count is 1000"),
    ({"llama__block_count": 3}, "says 3 blocks"),
    ({"llama__block_count": 1}, "weights for 2"),
    ({"llama__block_count": 2.0}, "block_count is 2.0"),
    ({"llama__nextn_predict_layers": 3}, "nextn_predict_layers"),
    ({"llama__attention__layer_norm_rms_epsilon": float("nan")}, "is nan"),
    ({"llama__attention__layer_norm_rms_epsilon": -1e-5}, "small positive"),
    ({"llama__attention__layer_norm_rms_epsilon": float("inf")}, "is inf"),
    ({"llama__attention__layer_norm_epsilon": float("nan")}, "layer_norm_epsilon"),
    ({"llama__attention__head_count_kv": 3}, "does not divide"),
    ({"llama__attention__head_count_kv": [2, 0]}, "is 0 for block 1"),
    ({"llama__attention__head_count_kv": [2, 4]}, "block 1's attn_k.weight"),
    ({"llama__attention__head_count": 0}, "head_count is 0 for block 0"),
    ({"llama__rope__dimension_count": 8}, "rope.dimension_count is 8"),
    ({"llama__attention__value_length": 32}, "value_length (32) differ"),
    ({"llama__rope__scaling__type": "bogus"}, "rope.scaling.type"),
    ({"tokenizer__chat_template": "{{ x }}" * 100000}, "700,000 characters"),
    ({"llama__rope__scaling__type": ""}, "rope.scaling.type"),
    ({"llama__expert_count": 4}, "mixture-of-experts"),
    ({"llama__expert_used_count": 2}, "mixture-of-experts"),
    ({"llama__expert_count": 4, "llama__expert_used_count": 2,
      "llama__expert_group_count": 3}, "mixture-of-experts"),
    ({"llama__expert_count": 5000, "llama__expert_used_count": 2},
     "mixture-of-experts"),
    ({"llama__context_length": 0}, "context_length is 0"),
    ({"llama__context_length": 2**32 - 1}, "context_length is 4294967295"),
    ({"llama__embedding_length": 65}, "embedding_length is 65"),
    ({"tokenizer__ggml__tokens": VOCAB[:-1]}, "has rows for 259"),
    ({"tokenizer__ggml__tokens": VOCAB[:-1] + ["a"]}, "lists 'a' twice"),
    ({"tokenizer__ggml__model": "none"}, "no vocabulary"),
])
def test_what_llama_cpp_asserts_on_is_named(changes, words):
    assert words in (problem(*model(**changes)) or "")


def test_vocabulary_and_special_token_rules():
    # bos 1 is in range by default for SentencePiece; a tiny vocabulary is not
    md, tensors = model(tokenizer__ggml__tokens=["a"])
    tensors[0] = tensor("token_embd.weight", (64, 1), "Q8_0")
    assert "adds a bos token" in problem(md, tensors)
    md["tokenizer.ggml.add_bos_token"] = False
    assert "lacks 255 byte tokens" in problem(md, tensors)
    md["tokenizer.ggml.tokens"] = ["a", "b"]
    tensors[0] = tensor("token_embd.weight", (64, 2), "Q8_0")
    md["tokenizer.ggml.model"] = "bert"  # bos 101 and sep 102, always added
    assert "adds a bos token" in problem(md, tensors)
    md["tokenizer.ggml.bos_token_id"] = 0
    assert "adds a sep token" in problem(md, tensors)
    md["tokenizer.ggml.model"] = "t5"  # eos 1 by default, added
    md["tokenizer.ggml.tokens"] = ["a"]
    tensors[0] = tensor("token_embd.weight", (64, 1), "Q8_0")
    assert "adds a eos token" in problem(md, tensors)
    md["tokenizer.ggml.add_eos_token"] = False
    assert problem(md, tensors) is None
    md["tokenizer.ggml.tokens"] = ["a", "b"]
    tensors[0] = tensor("token_embd.weight", (64, 2), "Q8_0")
    md["tokenizer.ggml.model"] = "rwkv"  # its tokenizer never adds any
    assert problem(md, tensors) is None
    # empty entries are named [EMPTY_i] by llama.cpp, so two are not twins;
    # undecodable bytes (shown as U+FFFD) may differ and are not compared
    md["tokenizer.ggml.tokens"] = ["", ""]
    assert problem(md, tensors) is None
    md["tokenizer.ggml.tokens"] = ["\ufffd", "\ufffd"]
    assert problem(md, tensors) is None


def test_per_layer_counts_and_norm_types():
    # head counts per block that agree with the weights pass
    assert problem(*model(llama__attention__head_count=[4, 4],
                          llama__attention__head_count_kv=[2, 2])) is None
    md, tensors = model()
    tensors[1] = tensor("output_norm.weight", (64,), "Q8_0")
    assert "not F32" in problem(md, tensors)
