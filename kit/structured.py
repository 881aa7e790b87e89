"""Answers that follow a JSON schema, through llama.cpp grammars.

A JSON schema says which fields an answer must have. The kit turns it into a
llama.cpp grammar (GBNF), and at every step the model may only pick tokens
that keep the answer valid, so the result always parses. The grammar holds
the shape (fields, types, enum values, string lengths, list sizes, patterns)
but not number ranges such as "minimum": generate_json validates the parsed
answer against the whole schema afterwards.

>>> book = {"type": "object", "properties": {"title": {"type": "string"}},
...         "required": ["title"]}
>>> generate_json(model, "Name one novel by Jane Austen.", book)
{'title': 'Pride and Prejudice'}
"""
from __future__ import annotations

import json
from pathlib import Path

from kit.errors import BadSchema, StructuredOutputInvalid

ANY_JSON = "json"  # "any JSON object", as in Ollama's format="json"
SCHEMA_SECONDS = 10.0  # real schemas convert in milliseconds


def parse_schema(schema) -> dict:
    """A checked JSON schema from a dict, a JSON string, or "json" (any object)."""
    if schema == ANY_JSON or schema == {}:
        return {"type": "object"}
    if isinstance(schema, (str, bytes)):
        try:
            schema = json.loads(schema)
        except ValueError as exc:
            raise BadSchema(f"it is not JSON ({exc})") from exc
    if not isinstance(schema, dict):
        raise BadSchema(f"a schema is a JSON object, not {type(schema).__name__}")
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise BadSchema(f"{exc.message} (at {'/'.join(map(str, exc.path)) or 'top'})"
                        ) from exc
    return schema


def load_schema(path) -> dict:
    """Read a JSON schema from a file (for `kit run --json-schema FILE`)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadSchema(f"cannot read {path} ({exc.strerror or exc})") from exc
    return parse_schema(text)


def to_grammar(schema) -> str:
    """The llama.cpp grammar (GBNF text) that allows only answers fitting `schema`."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from kit.engines.guards import time_limit

    too_slow = f"turning it into a grammar took over {SCHEMA_SECONDS:g} s; simplify it"
    schema = parse_schema(schema)
    try:
        with time_limit(SCHEMA_SECONDS, lambda: BadSchema(too_slow)):
            return json_schema_to_gbnf(json.dumps(schema))
    except BadSchema:
        raise
    except Exception as exc:  # the converter asserts on what it cannot express
        raise BadSchema(f"llama.cpp cannot express it as a grammar ({exc})") from exc


def check_grammar(llm, gbnf: str) -> str:
    """Parse `gbnf` once for this model; a grammar llama.cpp rejects never runs.

    llama-cpp-python hands the grammar to llama.cpp without checking that it
    parsed, and a grammar that did not would stop the process.
    """
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    ptr = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
    if not ptr:  # NULL: llama.cpp could not parse it (it said why on stderr)
        raise BadSchema("llama.cpp could not parse the grammar made from it")
    llama_cpp.llama_sampler_free(ptr)
    return gbnf


def validate(obj, schema) -> list[str]:
    """Every way `obj` breaks `schema`, as readable lines (empty: it is valid)."""
    from jsonschema.validators import validator_for

    schema = parse_schema(schema)
    checker = validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.path)) or '(top)'}: {e.message}"
            for e in sorted(checker.iter_errors(obj), key=lambda e: list(e.path))]


def parse_answer(text: str, schema):
    """The JSON object in `text`, checked against `schema` (else an error)."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise StructuredOutputInvalid(f"it is not complete JSON ({exc})", text) from exc
    problems = validate(obj, schema)
    if problems:
        raise StructuredOutputInvalid("; ".join(problems), text)
    return obj


def generate_json(model, prompt, schema, **options):
    """Ask `model` for JSON fitting `schema`; return it parsed and validated.

    `prompt` is text (sent as one user message) or a list of chat messages.
    Keyword options are sampling settings (temperature, seed, max_tokens...).
    """
    messages = prompt if isinstance(prompt, list) else [{"role": "user",
                                                         "content": prompt}]
    options.setdefault("max_tokens", 512)
    stream = model.chat(messages, json_schema=schema, **options)
    text = stream.text
    if stream.stats.stop_reason in ("length", "context"):
        raise StructuredOutputInvalid(
            f"the answer was cut off after {stream.stats.generated_tokens} tokens "
            f"({stream.stats.stop_reason})", text)
    return parse_answer(text, schema)
