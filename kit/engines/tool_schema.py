"""Tools from Python functions or OpenAI-style schemas (notebook 09; used by every engine and the server).

A function's name, type hints and docstring become a JSON schema the model
reads; an OpenAI-style schema is checked as JSON Schema first.

>>> def add(a: int, b: int) -> int:
...     "Add two whole numbers."
...     return a + b
>>> from_function(add).parameters["properties"]
{'a': {'type': 'integer'}, 'b': {'type': 'integer'}}
"""
from __future__ import annotations

import inspect
import json
import re
import types
import typing
import uuid
from dataclasses import dataclass, field
from typing import Callable

from kit.errors import BadSchema, BadTool, UnknownTool

CHOICES = ("auto", "none", "required")
OPEN, CLOSE = "<tool_call>", "</tool_call>"  # how a call is written (Hermes/Qwen)
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
PY_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean",
            list: "array", dict: "object"}


@dataclass
class Tool:
    """One tool: its name, what it does, its arguments (JSON schema), the code."""

    name: str
    description: str
    parameters: dict
    function: Callable | None = None
    confirm: bool = False  # it changes things: a person must say yes first

    def schema(self) -> dict:
        """The OpenAI-style schema (what templates and servers expect)."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": self.parameters}}


@dataclass
class ToolCall:
    name: str
    arguments: dict
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")

    def openai(self) -> dict:
        return {"id": self.id, "type": "function", "function": {
            "name": self.name, "arguments": json.dumps(self.arguments)}}

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.arguments.items())
        return f"{self.name}({args})"


def needs_confirmation(fn):
    """Mark a tool that writes or deletes: run_tools asks a person first."""
    fn.kit_confirm = True
    return fn


def _type_schema(hint, where: str) -> dict:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in PY_TYPES:
        return {"type": PY_TYPES[hint]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, tuple, set) and args:
        return {"type": "array", "items": _type_schema(args[0], where)}
    if origin is dict:
        return {"type": "object"}
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _type_schema(rest[0], where)
    raise BadTool(where, f"the type hint {hint!r} has no JSON equivalent; use str, "
                  "int, float, bool, list[...], dict or Literal[...]")


def _arg_docs(doc: str) -> dict[str, str]:
    """Argument descriptions from 'name: text' or ':param name: text' lines."""
    out = {}
    for line in doc.splitlines():
        m = re.match(r"\s*(?::param\s+)?(\w+)\s*(?:\([^)]*\))?\s*:\s*(.+)", line)
        if m:
            out.setdefault(m.group(1), m.group(2).strip())
    return out


def from_function(fn) -> Tool:
    """A Tool from a function's name, type hints and docstring."""
    name = getattr(fn, "__name__", repr(fn))
    try:
        hints = typing.get_type_hints(fn)
        sig = inspect.signature(fn)
    except (TypeError, ValueError, NameError) as exc:
        raise BadTool(name, f"its signature cannot be read ({exc})") from exc
    doc = inspect.getdoc(fn) or ""
    if not doc:
        raise BadTool(name, "it has no docstring, so the model cannot know what "
                      "it does; add one line saying so")
    docs, props, required = _arg_docs(doc), {}, []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise BadTool(name, f"*{p.name} arguments cannot be described to a model")
        if p.name not in hints:
            raise BadTool(name, f"the argument {p.name!r} has no type hint "
                          f"(write e.g. `{p.name}: str`)")
        props[p.name] = _type_schema(hints[p.name], name)
        if p.name in docs:
            props[p.name]["description"] = docs[p.name]
        if p.default is p.empty:
            required.append(p.name)
    params = {"type": "object", "properties": props, "required": required,
              "additionalProperties": False}
    return Tool(name, doc.split("\n\n")[0].replace("\n", " "), params, fn,
                getattr(fn, "kit_confirm", False))


def from_schema(spec: dict, function=None) -> Tool:
    """A Tool from an OpenAI-style schema (or its inner "function" part)."""
    if not isinstance(spec, dict):
        raise BadTool(repr(spec)[:40], "a tool schema is a JSON object")
    inner = spec.get("function", spec) if spec.get("type", "function") == "function" \
        else None
    if not isinstance(inner, dict):
        raise BadTool(str(spec.get("type")), "only tools of type \"function\" exist")
    name = inner.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise BadTool(str(name), "a name is 1-64 letters, digits, _ or -, "
                      "starting with a letter")
    params = inner.get("parameters") or {"type": "object", "properties": {}}
    from kit.structured import parse_schema

    try:
        parse_schema(params)
    except BadSchema as exc:
        raise BadTool(name, f"its parameters are not valid JSON Schema: "
                      f"{exc.problem}") from exc
    params = inline_refs(params, name)
    if params.get("type") != "object":
        raise BadTool(name, "its parameters must be a JSON schema of type \"object\"")
    return Tool(name, str(inner.get("description") or ""), params, function)


MAX_NODES = 5_000  # a schema's size once its references are written out


def _pointer(root: dict, ref: str, tool: str):
    """The part of `root` that a local reference such as '#/$defs/Book' names."""
    from urllib.parse import unquote

    if not ref.startswith("#"):
        raise BadTool(tool, f"its parameters refer to {ref!r}, outside the schema; "
                      "put that definition under \"$defs\" and refer to it as "
                      "\"#/$defs/NAME\"")
    node = root
    for part in [p for p in unquote(ref[1:]).split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise BadTool(tool, f"its parameters refer to {ref!r}, which the "
                          "schema does not define")
    return node


def inline_refs(schema: dict, tool: str = "tool") -> dict:
    """The schema with each local "$ref" replaced by what it names.

    The parameters sit inside a larger grammar for the call, where a reference
    such as "#/$defs/Book" would no longer find its definition, so the
    definitions are written out in place (what openai.pydantic_function_tool
    makes for a model holding another model). A schema that refers to itself
    (a tree of any depth) cannot become a grammar and is refused.

    >>> inline_refs({"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}},
    ...              "$defs": {"B": {"type": "integer"}}})
    {'type': 'object', 'properties': {'b': {'type': 'integer'}}}
    """
    count = [0]

    def walk(node, seen: tuple):
        count[0] += 1
        if count[0] > MAX_NODES:
            raise BadTool(tool, f"its parameters grow past {MAX_NODES:,} parts once "
                          "their references are written out; simplify them")
        if isinstance(node, list):
            return [walk(v, seen) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in seen:
                raise BadTool(tool, f"its parameters are recursive ({ref!r} refers "
                              "back to itself), which a grammar cannot follow; "
                              "describe a fixed number of levels instead")
            target = walk(_pointer(schema, ref, tool), seen + (ref,))
            rest = {k: walk(v, seen) for k, v in node.items() if k != "$ref"}
            return {**target, **rest} if isinstance(target, dict) else target
        return {k: walk(v, seen) for k, v in node.items()
                if k not in ("$defs", "definitions") or node is not schema}

    if "$ref" not in json.dumps(schema):
        return schema  # the usual case: nothing to write out
    return walk(schema, ())


def as_tools(tools) -> list[Tool]:
    """Tools from functions, schemas or Tool objects; names must differ."""
    out: list[Tool] = []
    for t in tools or []:
        tool = t if isinstance(t, Tool) else from_schema(t) if isinstance(t, dict) \
            else from_function(t) if callable(t) else None
        if tool is None:
            raise BadTool(repr(t)[:40], "pass a function, a schema dict or a Tool")
        if not NAME.match(tool.name):
            raise BadTool(tool.name, "a name is 1-64 letters, digits, _ or -")
        if any(o.name == tool.name for o in out):
            raise BadTool(tool.name, "two tools share this name, so a call could "
                          "not say which one it means; rename one")
        out.append(tool)
    return out


def chosen(tools: list[Tool], tool_choice) -> tuple[str, list[Tool]]:
    """(mode, tools the model may call) for tool_choice auto/none/required/a name."""
    if tool_choice is None:
        tool_choice = "auto"
    if isinstance(tool_choice, dict):  # {"type": "function", "function": {"name"}}
        tool_choice = (tool_choice.get("function") or {}).get("name") \
            or tool_choice.get("name")
    if not isinstance(tool_choice, str) or not tool_choice:
        raise BadTool(str(tool_choice), "tool_choice is \"auto\", \"none\", "
                      "\"required\" or the name of one offered tool")
    if tool_choice in CHOICES:
        return tool_choice, tools
    match = [t for t in tools if t.name == tool_choice]
    if not match:
        raise UnknownTool(tool_choice, [t.name for t in tools])
    return "required", match


