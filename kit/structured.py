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

import ctypes
import json
import math
from pathlib import Path

from kit.errors import BadSchema, StructuredOutputInvalid

ANY_JSON = "json"  # "any JSON object", as in Ollama's format="json"


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

    schema = parse_schema(schema)
    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter asserts on what it cannot express
        raise BadSchema(f"llama.cpp cannot express it as a grammar ({exc})") from exc


def check_grammar(llm, gbnf: str) -> str:
    """Parse `gbnf` once for this model; a grammar llama.cpp rejects never runs."""
    import llama_cpp

    ptr = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, gbnf.encode("utf-8"),
                                               b"root")
    if not ptr:  # NULL: llama.cpp could not parse it (it said why on stderr)
        raise BadSchema("llama.cpp could not parse the grammar made from it")
    llama_cpp.llama_sampler_free(ptr)
    return gbnf


def _sampler_chain(llm, s):
    """The same chain llama-cpp-python builds for these settings, minus grammar."""
    from llama_cpp._internals import LlamaSampler

    chain = LlamaSampler()
    chain.add_penalties(n_vocab=llm.n_vocab(), penalty_last_n=llm.last_n_tokens_size,
                        penalty_repeat=s.repeat_penalty, penalty_freq=0.0,
                        penalty_present=0.0)
    if s.temperature == 0:
        chain.add_greedy()
    else:
        chain.add_top_k(s.top_k)
        chain.add_typical(1.0, 1)
        chain.add_top_p(s.top_p, 1)
        chain.add_min_p(s.min_p, 1)
        chain.add_temp(s.temperature)
        chain.add_dist(s.seed if s.seed is not None else llm._seed)
    return chain


def _prefill(llm, tokens) -> None:
    """Evaluate the prompt, reusing the part already in the KV cache."""
    same = 0
    for a, b in zip(llm._input_ids[: llm.n_tokens], tokens):
        if a != b:
            break
        same += 1
    same = min(same, len(tokens) - 1)  # always evaluate at least one token
    if same > 0 and llm._ctx.kv_cache_seq_rm(-1, same, -1):
        llm.n_tokens = same
    else:
        llm.reset()
        same = 0
    llm.eval(tokens[same:])


def constrained_tokens(llm, tokens, s, gbnf: str):
    """Generate token ids that keep to the grammar `gbnf` (a generator).

    Like llama.cpp's own sampler: pick a token as usual, then ask the grammar
    whether it fits; only when it does not, mask the whole vocabulary with the
    grammar and pick again. Most tokens fit, so most steps cost no more than
    unconstrained ones.
    """
    import llama_cpp
    import numpy as np

    n_vocab = llm.n_vocab()
    grammar = llama_cpp.llama_sampler_init_grammar(llm._model.vocab,
                                                   gbnf.encode("utf-8"), b"root")
    if not grammar:
        raise BadSchema("llama.cpp could not parse the grammar made from it")
    chain = _sampler_chain(llm, s)
    row = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
    data, one = np.zeros(n_vocab, dtype=row), np.zeros(1, dtype=row)
    ids = np.arange(n_vocab, dtype=np.intc)
    cands = llama_cpp.llama_token_data_array(
        data=data.ctypes.data_as(llama_cpp.llama_token_data_p), size=n_vocab,
        selected=-1, sorted=False)
    probe = llama_cpp.llama_token_data_array(
        data=one.ctypes.data_as(llama_cpp.llama_token_data_p), size=1,
        selected=-1, sorted=False)

    def pick(logits, masked: bool) -> int:
        data["id"], data["logit"], data["p"] = ids, logits, 0.0
        cands.size, cands.selected, cands.sorted = n_vocab, -1, False
        if masked:
            llama_cpp.llama_sampler_apply(grammar, ctypes.byref(cands))
        llama_cpp.llama_sampler_apply(chain.sampler, ctypes.byref(cands))
        return int(data["id"][cands.selected])

    try:
        _prefill(llm, list(tokens))
        while True:
            logits = np.ctypeslib.as_array(
                llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,))
            token = pick(logits, masked=False)
            one["id"], one["logit"], one["p"] = token, 1.0, 0.0
            probe.size, probe.selected = 1, -1
            llama_cpp.llama_sampler_apply(grammar, ctypes.byref(probe))
            if not math.isfinite(float(one["logit"][0])):  # the grammar says no
                token = pick(logits, masked=True)
            llama_cpp.llama_sampler_accept(grammar, token)
            chain.accept(token)
            yield token
            llm.eval([token])
    finally:
        llama_cpp.llama_sampler_free(grammar)
        chain.close()


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
