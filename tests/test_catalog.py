"""The curated catalog: consistent offline; checked against the Hub with network."""
import os
import re

import pytest

from kit.models import catalog
from kit.engines import ENGINES
from kit.fit import estimate
from kit.modelfile import read_facts
from kit.settings import STARTER_NAME
from kit.models.starter import STARTER

ENTRIES = catalog.entries()
FIELDS = {"name", "family", "title", "repo", "file", "size", "parameters",
          "quantization", "license", "context_length", "n_layers", "n_kv_heads",
          "head_dim", "engines", "instruct", "gated", "source"}


def test_every_entry_is_complete_and_consistent():
    names = [e["name"] for e in ENTRIES]
    assert len(names) == len(set(names)) and 12 <= len(names) <= 20
    for e in ENTRIES:
        assert FIELDS <= set(e), e["name"]
        assert catalog.CATALOG_NAME.match(e["name"]), e["name"]
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", e["repo"]) and e["file"].endswith(".gguf")
        assert catalog.parse_quant(e["file"]) == e["quantization"], e["name"]
        # Ollama style: family:size-quant; the PyPI models keep Ollama's own name
        if e["name"] != STARTER_NAME and "pypi" not in e:
            assert e["name"].endswith("-" + e["quantization"].lower())
        bits = e["size"] * 8 / e["parameters"]
        assert 3.5 < bits < 9, (e["name"], bits)  # a 4-bit file, give or take
        assert e["n_layers"] > 0 and e["head_dim"] in (64, 96, 128, 256)
        assert 1 <= e["n_kv_heads"] <= 32 and e["context_length"] >= 2048
        assert set(e["engines"]) <= set(ENGINES) and e["engines"]
        assert e["license"] and e["instruct"] is True
        assert e["source"] in ("hub", "starter")


def test_it_spans_families_and_sizes():
    assert len({e["family"] for e in ENTRIES}) >= 5
    params = [e["parameters"] for e in ENTRIES]
    assert min(params) < 200e6 and max(params) > 7e9
    for family in ("SmolLM2", "Qwen2.5", "Llama 3.2", "Gemma 3", "Phi-3.5", "Mistral"):
        assert any(e["family"] == family for e in ENTRIES), family


def test_the_starter_entry_matches_the_real_file(starter_path):
    e = catalog.get(STARTER_NAME)
    assert e["source"] == "starter"
    assert e["size"] == STARTER["size"] and e["sha256"] == STARTER["sha256"]
    facts = read_facts(starter_path)
    assert e["parameters"] == facts.parameters
    assert e["n_layers"] == facts.block_count and e["n_kv_heads"] == facts.head_count_kv
    assert e["head_dim"] == facts.embedding_length // facts.head_count
    assert e["context_length"] == facts.context_length
    # so the estimate before download equals the one from the file itself
    assert catalog.estimate(e, 2048).total == estimate(facts, 2048).total


def test_notes_say_what_is_unverified():
    assert "not verified" in catalog.notes().lower()
    assert "KIT_NETWORK_TESTS" in catalog.notes()


def test_lookups():
    assert catalog.get("LLAMA3.2:1b-q4_k_m ")["family"] == "Llama 3.2"
    assert catalog.get("nope:1b") is None
    assert {e["name"] for e in catalog.find("qwen")} >= {"qwen2.5:0.5b-q4_k_m"}
    assert catalog.find("llama 3b")[0]["name"] == "llama3.2:3b-q4_k_m"
    e = catalog.get("gemma3:1b-q4_k_m")
    assert catalog.by_file(e["repo"].upper(), e["file"])["name"] == e["name"]
    assert catalog.typical_shape(1.2e9) == (16, 8, 64)  # Llama 3.2 1B's


def test_table_gives_a_verdict_per_model():
    rows = catalog.table(2048, ram_available=3_000_000_000)
    assert len(rows) == len(ENTRIES)
    fits = {r["name"]: r["fits"] for r in rows}
    assert fits[STARTER_NAME] == "yes" and fits["llama3.1:8b-q4_k_m"] == "no"
    text = catalog.format_table(rows)
    assert text.splitlines()[0].startswith("NAME") and "llama3.2:1b-q4_k_m" in text


def test_entries_are_copies():
    catalog.entries()[0]["size"] = 1
    catalog.get(STARTER_NAME)["size"] = 1
    assert catalog.get(STARTER_NAME)["size"] == STARTER["size"]


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("KIT_NETWORK_TESTS") != "1",
                    reason="needs the real Hub: set KIT_NETWORK_TESTS=1")
@pytest.mark.parametrize("entry", [e for e in ENTRIES if e["source"] == "hub"],
                         ids=lambda e: e["name"])
def test_entry_matches_the_real_hub(entry, monkeypatch):
    from kit.models import hub

    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    report = hub.inspect(entry["repo"])
    found = {f.name: f for f in report.files}
    assert entry["file"] in found, sorted(found)
    size = found[entry["file"]].size
    assert abs(size - entry["size"]) / size < 0.02, size  # rounded in the data
    assert found[entry["file"]].sha256  # the Hub gives a sha256 to verify with
    assert report.gated is entry["gated"]
    assert entry["license"].split()[0].lower() in (report.license or "").lower()
