"""JSON-schema-constrained answers on the real starter model."""
import json
import os
import subprocess
import sys

import jsonschema
import llama_cpp
import pytest

from kit.engines import load
from kit.errors import BadSchema, StructuredOutputInvalid
from kit.structured import (check_grammar, generate_json, load_schema, parse_schema,
                            to_grammar, validate)

BOOK = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 80},
        "authors": {"type": "array", "items": {"type": "string", "maxLength": 40},
                    "minItems": 1, "maxItems": 3},
        "year": {"type": "integer"},
        "language": {"type": "string", "enum": ["English", "French", "German"]},
    },
    "required": ["title", "authors", "year", "language"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Give the catalogue record of the novel Emma by "
        "Jane Austen (1815) as JSON: title, authors, year, language."}]


@pytest.fixture(scope="module")
def model():
    # one thread: the 2 cores are shared with other test runs (see test_server)
    return load("smollm2:135m", n_ctx=1024, n_threads=1, quiet=True)


def test_greedy_answer_equals_llama_cpp_own_grammar_sampling(model):
    # Reference: llama-cpp-python applying the same grammar to every token.
    gbnf = to_grammar(BOOK)
    llm = model.llm
    tokens = llm.tokenize(model.format_chat(ASK).encode(), add_bos=False, special=True)
    want = []
    for tok in llm.generate(tokens, temp=0, top_k=40, top_p=0.95, min_p=0.05,
                            repeat_penalty=1.1,
                            grammar=llama_cpp.LlamaGrammar.from_string(gbnf)):
        if llama_cpp.llama_vocab_is_eog(model.vocab, tok) or len(want) > 200:
            break
        want.append(tok)
    stream = model.chat(ASK, json_schema=BOOK, temperature=0, max_tokens=200)
    assert stream.text == llm.detokenize(want).decode()
    assert stream.stats.stop_reason == "eos"
    jsonschema.validate(json.loads(stream.text), BOOK)


def test_every_sampled_answer_fits_the_schema(model):
    # Free sampling at temperature 1 still yields valid records: the grammar
    # only ever allows tokens that keep the answer inside the schema.
    answers = [generate_json(model, ASK, BOOK, temperature=1.0, seed=s, max_tokens=300)
               for s in (1, 2, 3)]
    for record in answers:
        jsonschema.validate(record, BOOK)
    assert len({json.dumps(a, sort_keys=True) for a in answers}) > 1  # really sampled


def test_limits_the_grammar_cannot_hold_are_still_checked(model):
    # llama.cpp's grammars hold the shape (fields, types, enums, lengths) but
    # not number ranges: generate_json validates, so a bad value is an error.
    strict = {**BOOK, "properties": {**BOOK["properties"],
                                     "year": {"type": "integer", "minimum": 3000}}}
    with pytest.raises(StructuredOutputInvalid, match="year.*3000"):
        generate_json(model, ASK, strict, temperature=0, max_tokens=200)


def test_without_a_schema_the_model_does_not_give_json(model):
    # Why grammars matter: the same question, unconstrained, is not a record.
    text = model.chat(ASK, temperature=0, max_tokens=120).text
    with pytest.raises((ValueError, jsonschema.ValidationError)):
        jsonschema.validate(json.loads(text), BOOK)


def test_any_json_object(model):
    stream = model.chat([{"role": "user", "content": "A JSON object about cats."}],
                        json_schema="json", temperature=0.7, seed=2, max_tokens=300)
    text = stream.text
    if stream.stats.stop_reason == "eos":
        assert isinstance(json.loads(text), dict)
    assert text.lstrip().startswith("{")


def test_plain_completion_takes_a_schema_too(model):
    schema = {"type": "object", "properties": {"colour": {"enum": ["red", "blue"]}},
              "required": ["colour"]}
    out = model.generate("The sky is", json_schema=schema, temperature=0,
                         max_tokens=30).text
    assert json.loads(out)["colour"] in ("red", "blue")


def test_cut_off_answer_is_reported_not_returned(model):
    with pytest.raises(StructuredOutputInvalid, match="max_tokens|cut off"):
        generate_json(model, ASK, BOOK, temperature=0, max_tokens=5)


def test_bad_schema_fails_before_generating(model):
    with pytest.raises(BadSchema, match="frob"):
        model.chat(ASK, json_schema={"type": "frob"})
    with pytest.raises(BadSchema, match="not JSON"):
        model.generate("x", json_schema="{not json")


@pytest.mark.parametrize("schema,words", [
    ({"type": 5}, ["5"]),
    ([1, 2], ["list"]),
    ({"properties": {"a": {"$ref": "https://example.org/x.json"}}}, ["grammar"]),
])
def test_bad_schemas_say_what_is_wrong(schema, words):
    with pytest.raises(BadSchema) as err:
        to_grammar(schema)
    for w in words:
        assert w in str(err.value)
    assert "json-schema.org" in str(err.value)


def test_a_grammar_llama_cpp_rejects_never_runs(model):
    with pytest.raises(BadSchema, match="parse the grammar"):
        check_grammar(model.llm, "root ::= undefined-rule")


def test_parse_schema_forms():
    assert parse_schema("json") == {"type": "object"}
    assert parse_schema('{"type": "string"}') == {"type": "string"}


def test_validate_lists_every_problem():
    problems = validate({"title": 3, "year": "soon"}, BOOK)
    text = " ".join(problems)
    assert "title" in text and "year" in text and "authors" in text


def test_load_schema_errors_name_the_file(tmp_path):
    with pytest.raises(BadSchema, match="missing.json"):
        load_schema(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(BadSchema, match="not JSON"):
        load_schema(bad)


def kit(*args):
    return subprocess.run([sys.executable, "-m", "kit", *args], capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "KIT_THREADS": "1"})


def test_kit_run_json_schema(tmp_path):
    schema = tmp_path / "book.json"
    schema.write_text(json.dumps(BOOK))
    out = kit("run", "smollm2:135m", ASK[0]["content"], "--json-schema", str(schema),
              "--temperature", "0", "--max-tokens", "200")
    assert out.returncode == 0, out.stderr
    jsonschema.validate(json.loads(out.stdout), BOOK)
    out = kit("run", "smollm2:135m", ASK[0]["content"], "--json-schema", str(schema),
              "--temperature", "0", "--max-tokens", "200", "--json")
    jsonschema.validate(json.loads(json.loads(out.stdout)["answer"]), BOOK)


def test_kit_run_bad_schema_file_is_a_clean_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "frob"}')
    out = kit("run", "smollm2:135m", "hi", "--json-schema", str(bad))
    assert out.returncode == 1 and out.stderr.startswith("Error:")
    assert "JSON schema cannot be used" in out.stderr and "Traceback" not in out.stderr
