"""The model settings llama.cpp trusts: check them before it reads the file.

llama.cpp checks a GGUF file's layout with care, but several of its model
settings reach a `GGML_ASSERT`, which ends the whole process (the Jupyter
kernel, or a server with every learner's session) with no message: a block
count of 0 or over 512, a NaN epsilon, a duplicated vocabulary entry, an
unknown RoPE scaling name, impossible expert or head counts. kit.gguf_check
calls `problem()` after reading the header (notebook 00: model facts).

>>> problem({"general.architecture": "llama", "llama.block_count": 0}, [])
'llama.block_count is 0 (it must be 1 to 512)'
"""
from __future__ import annotations

import math
import re

MAX_LAYERS = 512  # LLAMA_MAX_LAYERS
MAX_EXPERTS = 1024  # LLAMA_MAX_EXPERTS
MAX_CONTEXT = 2**31 - 1  # llama-cpp-python keeps it in a signed 32-bit int
ROPE_SCALING = ("none", "linear", "yarn", "longrope")
MAX_TEMPLATE = 2**19  # characters: the longest real chat templates hold ~20,000
_BLOCK = re.compile(r"blk\.(\d+)\.")
# tokenizer.ggml.model -> {token: (default id, added by default)} for the
# tokens llama.cpp asserts on when it adds them to a prompt (vocabulary
# loader and tokenizer); None: no default id, "always": no switch.
_TOKENIZERS = {
    "llama": {"bos": (1, True), "eos": (2, False)},
    "bert": {"bos": (101, "always"), "seperator": (102, "always")},
    "t5": {"bos": (None, False), "eos": (1, True)},
    "rwkv": {},
}
_BPE = {"bos": (11, True), "eos": (11, False)}  # gpt2 and the rest; bos maybe
# architectures whose graph asserts one head size for keys and values; True:
# and for RoPE too (models/<arch>.cpp: GGML_ASSERT(n_embd_head == n_rot))
_ONE_HEAD_SIZE = {"llama": True, "qwen2": True, "qwen3": True, "phi3": False,
                  "bert": False}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _per_layer(md: dict, key: str, n_layer: int | None):
    """A setting given once or per layer, as a list of ints (None if absent)."""
    v = md.get(key)
    if v is None:
        return None
    values = v if isinstance(v, list) else [v]
    if not values or not all(_is_int(x) for x in values):
        return None  # a wrong type: llama.cpp refuses it with a message
    if isinstance(v, list) and n_layer and len(values) != n_layer:
        return None  # llama.cpp refuses a wrong length with a message
    return values * (n_layer or 1) if not isinstance(v, list) else values


def _blocks(md: dict, a: str, tensors) -> tuple[str | None, int | None]:
    n = md.get(a + "block_count")
    if n is None:
        return None, None
    if not _is_int(n) or not 1 <= n <= MAX_LAYERS:
        return f"{a}block_count is {n!r} (it must be 1 to {MAX_LAYERS})", None
    found = {int(m[1]) for t in tensors if (m := _BLOCK.match(t.name))}
    if found and max(found) + 1 != n:
        return (f"{a}block_count says {n} blocks (layers) but the file holds "
                f"weights for {max(found) + 1}"), None
    nextn = md.get(a + "nextn_predict_layers", 0)
    if not _is_int(nextn) or not 0 <= nextn <= n:
        return f"{a}nextn_predict_layers is {nextn!r}, more than {n} blocks", n
    return None, n


def _heads(md: dict, a: str, n_layer, tensors) -> str | None:
    heads = _per_layer(md, a + "attention.head_count", n_layer)
    kv = _per_layer(md, a + "attention.head_count_kv", n_layer) or heads
    if heads is None or kv is None:
        return None
    attn = {int(m[1]) for t in tensors
            if (m := _BLOCK.match(t.name)) and ".attn_" in t.name}
    for i, (h, k) in enumerate(zip(heads, kv)):
        if not h and i in attn:
            return f"{a}attention.head_count is 0 for block {i}, which has attention"
        if (h and k and h % k) or (h and not k and i in attn):
            return (f"{a}attention.head_count_kv is {k} for block {i}, which "
                    f"does not divide its {h} attention heads")
    if not any(isinstance(md.get(a + k), list) for k in (
            "attention.head_count", "attention.head_count_kv")):
        return _head_size(md, a, heads[0])
    # Counts that change from block to block: llama.cpp sizes the weights by
    # block 0 but computes each block with its own count, so they must agree.
    width, klen = md.get(a + "embedding_length"), md.get(a + "attention.key_length")
    keys = {int(m[1]): t.shape for t in tensors if (m := _BLOCK.match(t.name))
            and t.name.endswith(".attn_k.weight") and len(t.shape) == 2}
    h0 = heads[0]  # llama.cpp's head size comes from block 0's count
    dim = klen if _is_int(klen) else width // h0 if _is_int(width) and h0 else 0
    for i, k in enumerate(kv):
        if i in keys and k and dim and keys[i][1] != k * dim:
            return (f"block {i}'s attn_k.weight holds {keys[i][1]} numbers "
                    f"per row, not {k} heads of {dim} ({a}attention."
                    "head_count_kv)")
    return None


def _head_size(md: dict, a: str, h0: int) -> str | None:
    """Keys, values (and RoPE) of one head size, where llama.cpp asserts it."""
    arch, width = a[:-1], md.get(a + "embedding_length")
    if arch not in _ONE_HEAD_SIZE or not h0 or not _is_int(width):
        return None
    k = md.get(a + "attention.key_length", width // h0)
    v = md.get(a + "attention.value_length", width // h0)
    rot = md.get(a + "rope.dimension_count", k)
    if k != v:
        return (f"{a}attention.key_length ({k}) and value_length ({v}) differ, "
                f"but llama.cpp's {arch} needs one head size")
    if _ONE_HEAD_SIZE[arch] and rot != k:
        return f"{a}rope.dimension_count is {rot}, not the head size {k}"
    return None


def _experts(md: dict, a: str, n_layer) -> str | None:
    n = md.get(a + "expert_count", 0)
    used = _per_layer(md, a + "expert_used_count", n_layer) or [0]
    groups = md.get(a + "expert_group_count", 0)
    group_used = md.get(a + "expert_group_used_count", 0)
    if not all(_is_int(x) for x in (n, groups, group_used)):
        return None
    what = (f"{a}expert_count {n}, expert_used_count {max(used)}, "
            f"expert_group_count {groups}, expert_group_used_count {group_used}")
    ok = 0 <= n <= MAX_EXPERTS and max(used) <= n
    if n > 0:
        ok = ok and max(used) > 0 and groups < n and (
            groups <= 1 or (n % groups == 0 and 0 < group_used < groups))
    else:
        ok = ok and max(used) == 0 and groups == 0
    return None if ok else f"the mixture-of-experts settings contradict: {what}"


def _floats(md: dict, a: str) -> str | None:
    for key, v in md.items():
        if not key.startswith(a) or isinstance(v, (str, bool)):
            continue
        if "epsilon" in key and isinstance(v, (int, float)) and not (
                math.isfinite(v) and v >= 0):
            return f"{key} is {v!r} (it must be a small positive number)"
    scaling = md.get(a + "rope.scaling.type")
    if isinstance(scaling, str) and scaling not in ROPE_SCALING:
        return (f"{a}rope.scaling.type is {scaling!r} (llama.cpp knows "
                f"{', '.join(ROPE_SCALING)})")
    ctx = md.get(a + "context_length")
    if ctx is not None and _is_int(ctx) and not 1 <= ctx <= MAX_CONTEXT:
        return f"{a}context_length is {ctx} (it must be 1 to {MAX_CONTEXT:,})"
    return None


def _vocabulary(md: dict, a: str, tensors) -> str | None:
    tokens = md.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        return None
    seen: dict = {}
    for i, t in enumerate(tokens):
        t = t or f"[EMPTY_{i}]"  # what llama.cpp calls an empty entry
        # U+FFFD stands for bytes that were not UTF-8: they may differ
        if t in seen and "\ufffd" not in t:
            return (f"the vocabulary lists {t!r} twice (entries {seen[t]} "
                    f"and {i})")
        seen[t] = i
    n = len(tokens)
    embd = next((t for t in tensors if t.name == "token_embd.weight"), None)
    width = md.get(a + "embedding_length")
    if embd is not None and len(embd.shape) == 2:
        if embd.shape[1] != n:
            return (f"the vocabulary has {n:,} entries but token_embd.weight "
                    f"has rows for {embd.shape[1]:,}")
        if _is_int(width) and embd.shape[0] != width:
            return (f"{a}embedding_length is {width} but token_embd.weight "
                    f"rows are {embd.shape[0]} wide")
    return _special_tokens(md, tokens)


def _special_tokens(md: dict, tokens: list) -> str | None:
    """A token llama.cpp adds to every prompt must exist (else it asserts)."""
    n, model = len(tokens), md.get("tokenizer.ggml.model")
    model = model if isinstance(model, str) else None  # else llama.cpp refuses
    for what, (default, add) in _TOKENIZERS.get(model, _BPE).items():
        flag = md.get(f"tokenizer.ggml.add_{what[:3]}_token")
        if add != "always" and isinstance(flag, bool):
            add = flag
        given = md.get(f"tokenizer.ggml.{what}_token_id")
        ok = [i for i in (given, default) if _is_int(i) and 0 <= i < n]
        if add and not ok:
            return (f"the tokenizer adds a {what[:3]} token to every prompt but "
                    f"its id ({given if given is not None else default}) is "
                    f"not among the {n:,} tokens")
    if model == "llama":  # SentencePiece spells unknown text byte by byte
        have = set(tokens)
        missing = [b for b in range(256) if f"<0x{b:02X}>" not in have
                   and not (b < 128 and chr(b) in have)]
        if missing:
            return (f"its SentencePiece vocabulary lacks {len(missing)} byte "
                    f"tokens (such as <0x{missing[0]:02X}>), which llama.cpp "
                    "needs to spell text it has no token for")
    return None


def _template_vocab_norms(md: dict, tensors) -> str | None:
    for key, v in md.items():  # compiled when the model loads: a huge one hangs
        if key.startswith("tokenizer.chat_template") and isinstance(v, str) \
                and len(v) > MAX_TEMPLATE:
            return (f"its chat template {key} is {len(v):,} characters long; "
                    "real ones are a few thousand")
    if md.get("tokenizer.ggml.model") in ("no_vocab", "none"):
        return ("it has no vocabulary (tokenizer.ggml.model is "
                f"{md['tokenizer.ggml.model']!r}), so it cannot read text")
    for t in tensors:  # llama.cpp multiplies by norms in 32-bit numbers only
        if "norm" in t.name and len(t.shape) == 1 and t.type_name != "F32":
            return f"the norm weights {t.name!r} are {t.type_name}, not F32"
    return None


def problem(md: dict, tensors) -> str | None:
    """What in the settings would stop llama.cpp with an assert; None if fine."""
    arch = md.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        return None  # llama.cpp refuses that with a message of its own
    a = arch + "."
    why, n_layer = _blocks(md, a, tensors)
    return (why or _heads(md, a, n_layer, tensors) or _experts(md, a, n_layer)
            or _floats(md, a) or _template_vocab_norms(md, tensors)
            or _vocabulary(md, a, tensors))
