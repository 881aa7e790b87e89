"""Comparing models side by side: real models on two engines and a server."""
import json

import pytest

from kit.cli import main
from kit.compare import compare, load_prompts, parse_spec
from kit.engines.ct_convert import to_ctransformers
from kit.engines.llama_server import LlamaServer
from kit.errors import BadPromptSet, KitError
from kit.models.registry import installed

QUICK = dict(max_tokens=12, n_threads=1, n_ctx=512)


@pytest.fixture(scope="module")
def ct_name():
    return to_ctransformers("smollm2:135m", quiet=True).name


@pytest.fixture(scope="module")
def result(ct_name):
    return compare(["smollm2:135m", f"{ct_name}@ctransformers", "nosuch:1b"],
                   "quick", **QUICK)


def test_parse_spec():
    assert parse_spec("smollm2:135m") == ("smollm2:135m", None, None)
    assert parse_spec("smollm2:135m", "ctransformers")[1] == "ctransformers"
    assert parse_spec("smollm2:135m-ct@ctransformers") == (
        "smollm2:135m-ct", "ctransformers", None)
    assert parse_spec("smollm2:135m@llama.cpp")[1] == "llamacpp"
    assert parse_spec("m@http://127.0.0.1:8080") == ("m", "remote", "http://127.0.0.1:8080")
    with pytest.raises(KitError, match="Unknown engine 'vllm'.*NAME@ENGINE"):
        parse_spec("m@vllm")


def test_built_in_role_prompts():
    roles = load_prompts("roles")
    assert [p["id"] for p in roles["prompts"]] == [
        "to-english", "to-french", "eli5", "professional", "json-record"]
    assert all(p["prompt"] for p in roles["prompts"])
    assert "five-year-old" in roles["prompts"][2]["system"]
    assert len(load_prompts("quick")["prompts"]) == 2


def test_users_own_prompt_files(tmp_path):
    j = tmp_path / "mine.json"
    j.write_text(json.dumps(["First?", {"id": "b", "prompt": "Second?", "system": "S"}]))
    got = load_prompts(j)["prompts"]
    assert [(p["id"], p["prompt"], p["system"]) for p in got] == [
        ("p1", "First?", ""), ("b", "Second?", "S")]
    y = tmp_path / "mine.yaml"
    y.write_text("prompts:\n  - id: a\n    prompt: Hello?\n")
    assert load_prompts(y)["prompts"][0]["prompt"] == "Hello?"
    t = tmp_path / "mine.txt"
    t.write_text("One\nprompt.\n\nTwo.\n")
    assert [p["prompt"] for p in load_prompts(t)["prompts"]] == ["One\nprompt.", "Two."]


@pytest.mark.parametrize("name, text, problem", [
    ("bad.json", "{nope", "could not be read"),
    ("empty.json", "[]", "no list of prompts"),
    ("blank.json", '[{"prompt": "  "}]', "prompt 1 has no text"),
    ("twice.json", '[{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}]',
     "same id"),
    ("evil.yaml", "!!python/object/apply:os.system ['echo hi']", "could not be read"),
])
def test_bad_prompt_files_say_what_is_wrong(tmp_path, name, text, problem):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(BadPromptSet, match=problem) as info:
        load_prompts(path)
    assert "Built-in sets" in str(info.value)
    with pytest.raises(BadPromptSet, match="no built-in set"):
        load_prompts("no-such-set")


def test_table_has_prompts_by_models_with_figures(result, ct_name):
    table = result.table()
    assert list(table.index) == ["A fact", "A list"]
    assert list(table.columns) == ["smollm2:135m", f"{ct_name}@ctransformers",
                                   "nosuch:1b"]
    cell = table.loc["A fact", "smollm2:135m"]
    assert "12 tokens" in cell or "tokens," in cell and "tok/s" in cell
    assert table.loc["A fact", "nosuch:1b"].startswith("[error: No model named")
    figures = result.figures()
    ok = figures[figures.error.isna()]
    assert len(ok) == 4 and (ok.gen_tps > 0).all() and (ok.generated_tokens > 0).all()


def test_provenance_of_every_run(result, ct_name):
    data = json.loads(result.to_json())
    models = {m["label"]: m for m in data["models"]}
    starter = models["smollm2:135m"]
    assert starter["sha256"] == installed()["smollm2:135m"]["sha256"]
    assert starter["engine"] == "llama.cpp" and starter["engine_version"]
    assert starter["quantization"] == "Q4_1"
    ct = models[f"{ct_name}@ctransformers"]
    assert ct["engine"] == "ctransformers" and ct["engine_version"] == "0.2.27"
    assert ct["sha256"] == installed()[ct_name]["sha256"]
    assert "No model named" in models["nosuch:1b"]["error"]
    s = data["settings"]
    assert (s["temperature"], s["seed"], s["max_tokens"]) == (0.0, 42, 12)
    assert {"top_p", "top_k", "min_p", "repeat_penalty"} <= set(s)
    assert data["machine"]["cores_logical"] >= 1 and data["machine"]["python"]
    run = data["runs"][0]
    assert {"answer", "ttft_s", "gen_tps", "total_s", "generated_tokens",
            "stop_reason"} <= set(run)


def test_greedy_runs_repeat_exactly(result):
    again = compare(["smollm2:135m"], "quick", **QUICK)
    assert again.answer("capital", "smollm2:135m")["answer"] == \
        result.answer("capital", "smollm2:135m")["answer"]


def test_markdown_and_json_files(result, tmp_path):
    md = tmp_path / "out" / "report.md"
    text = result.to_markdown(md)
    assert md.read_text() == text and not list(md.parent.glob("*.partial"))
    assert "| model | engine | version | quantization | file | sha256 |" in text
    assert "## 1. A fact" in text and "Prompt: What is the capital of France?" in text
    head, answers = text.split("## 1. A fact")
    for part, pipes in ((head, 7), (answers, 6)):  # 6 and 5 columns
        rows = [r for r in part.splitlines() if r.startswith("| smollm2:135m |")]
        assert rows and all(r.count("|") - r.count("\\|") == pipes for r in rows)
    out = tmp_path / "out.json"
    result.to_json(out)
    assert json.loads(out.read_text())["prompt_set"]["name"] == "quick"


def test_remote_server_in_the_same_comparison():
    with LlamaServer("smollm2:135m", n_ctx=512, n_threads=1) as server:
        res = compare(["smollm2:135m", f"smollm2:135m@{server.url}"], "quick", **QUICK)
    local = res.answer("capital", "smollm2:135m")["answer"]
    remote = res.answer("capital", f"smollm2:135m@{server.url}")
    assert remote["error"] is None and remote["answer"] == local
    info = res.models[1]
    assert info["engine"] == "remote" and info["server"] == server.url
    assert info["sha256"] is None  # the server does not say; never made up


def test_cli_compare_json(capsys, tmp_path):
    md = tmp_path / "r.md"
    code = main(["compare", "smollm2:135m", "--prompts", "quick", "--max-tokens", "6",
                 "--threads", "1", "--ctx", "512", "--json", "--md", str(md)])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["max_tokens"] == 6 and len(data["runs"]) == 2
    assert md.is_file()
    assert main(["compare", "smollm2:135m", "--prompts", str(tmp_path / "x.json")]) == 1
    assert "Cannot use the prompts" in capsys.readouterr().err
