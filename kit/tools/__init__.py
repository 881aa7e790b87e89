"""Stage 09, tools and agents: a model that calls functions (notebook 09).

>>> def add(a: int, b: int) -> int:
...     "Add two whole numbers."
...     return a + b
>>> answer = model.chat([{"role": "user", "content": "2+3?"}], tools=[add])
>>> answer.raw          # what the model wrote
'<tool_call>\\n{"name": "add", "arguments": {"a": 2, "b": 3}}\\n</tool_call>'
>>> answer.tool_calls   # the parsed call, checked against the schema
[ToolCall(name='add', arguments={'a': 2, 'b': 3}, id='call_...')]
>>> run = run_tools(model, "What is 2+3?", [add])   # call, result, answer

loop       run_tools: the agent loop, step limit, timeouts, a person's yes
library    the bundled library catalogue and its search tool (notebook 09)
check      check_answer: each book status in an answer held against the search

What every engine and the server need lives one floor down, in kit/engines/
(imports only go downward): tool_schema (tools from Python functions or
OpenAI-style schemas; tool_choice), tool_calls (the prompt, the grammar, the
parsed answer: engine.chat(..., tools=) lands there), tool_remote (the same
through an OpenAI-compatible server) and fim (fill in the middle).
"""
from __future__ import annotations


def run_tools(model, messages, tools, **options):
    """The agent loop; see kit.tools.loop.run_tools."""
    from kit.tools.loop import run_tools as _run_tools

    return _run_tools(model, messages, tools, **options)


def as_tools(tools):
    """Check tools and see their schemas; see kit.engines.tool_schema.as_tools."""
    from kit.engines.tool_schema import as_tools as _as_tools

    return _as_tools(tools)


def needs_confirmation(fn):
    """Mark a tool that writes or deletes: run_tools asks a person first."""
    from kit.engines.tool_schema import needs_confirmation as _mark

    return _mark(fn)


def fill_in_middle(model, prefix: str, suffix: str, **options):
    """Code between prefix and suffix; see kit.engines.fim.fill_in_middle."""
    from kit.engines.fim import fill_in_middle as _fim

    return _fim(model, prefix, suffix, **options)
