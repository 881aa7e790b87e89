"""The agent loop: ask, run the tools it calls, show it the results, ask again.

Every step is kept (and printed as it happens), a step limit stops a model
that keeps calling tools, a call repeated with the same arguments is not run
again (the next turn must answer in words), a tool that hangs is given up after `timeout`
seconds, an error is shown to the model as the tool's result, and a tool
marked with needs_confirmation runs only after a person says yes.

>>> run = run_tools(model, "What is 12 * 7?", [calculator])
step 1  model calls calculator(expression='12 * 7')
step 1  calculator -> 84
step 2  model answers: 12 * 7 is 84.
>>> run.answer
'12 * 7 is 84.'
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from kit.errors import BadTool, KitError, ToolFailed, UnknownTool
from kit.engines.tool_schema import ToolCall, as_tools

REFUSED = "A person did not allow this call, so it did not run."


@dataclass
class Step:
    """One thing that happened: a call, a tool's result, or the answer."""

    number: int
    kind: str  # "call", "result", "error", "refused", "repeat", "answer", "limit"
    text: str
    call: ToolCall | None = None
    raw: str = ""  # what the model wrote, for "call" and "answer" steps

    def line(self) -> str:
        return f"step {self.number}  {self.text}"


@dataclass
class Run:
    """The whole conversation, the steps, and the final answer (None if none)."""

    steps: list[Step] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    answer: str | None = None
    stopped: str = ""  # "answer" or "step limit"

    def calls(self) -> list[ToolCall]:
        return [s.call for s in self.steps if s.kind == "call"]

    def show(self) -> None:
        for s in self.steps:
            print(s.line())


def call_tool(tool, call: ToolCall, timeout: float) -> str:
    """Run one call in a worker thread; its result as text (or ToolFailed)."""
    box: dict = {}

    def work():
        try:
            box["value"] = tool.function(**call.arguments)
        except Exception as exc:  # shown to the model, which may try again
            box["error"] = f"{type(exc).__name__}: {exc}"

    worker = threading.Thread(target=work, daemon=True, name=f"kit-tool-{tool.name}")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():  # Python cannot stop a thread: it is left to finish
        raise ToolFailed(tool.name, f"it did not finish within {timeout:g} s")
    if "error" in box:
        raise ToolFailed(tool.name, box["error"])
    value = box.get("value")
    return value if isinstance(value, str) else json.dumps(value, default=str)


def run_tools(model, messages, tools, max_steps: int = 5, timeout: float = 10.0,
              ask=None, tool_choice="auto", verbose: bool = True, **options) -> Run:
    """Let `model` use `tools` until it answers in words, or max_steps turns.

    `ask(call)` decides about tools marked needs_confirmation (return True to
    run); without it they never run. tool_choice applies to the first turn.
    Other keyword options go to model.chat (temperature, max_tokens...).
    """
    tools = as_tools(tools)
    for t in tools:
        if t.function is None:
            raise BadTool(t.name, "it is only a schema, with no Python function to "
                          "run; pass the function itself")
    by_name = {t.name: t for t in tools}
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    run = Run(messages=[dict(m) for m in messages])

    def note(step: Step) -> None:
        run.steps.append(step)
        if verbose:
            print(step.line(), flush=True)

    done: set = set()  # calls already run: (name, arguments as JSON)
    choice = tool_choice
    for n in range(1, max_steps + 1):
        answer = model.chat(run.messages, tools=tools, tool_choice=choice, **options)
        answer.text  # noqa: B018 (runs the generation)
        choice = "auto"
        keys = [(c.name, json.dumps(c.arguments, sort_keys=True))
                for c in answer.tool_calls]
        if keys and all(k in done for k in keys):  # a loop: it has the results
            note(Step(n, "repeat", f"model repeats {answer.tool_calls[0]}: its "
                      "result is above, so the next turn must answer in words",
                      answer.tool_calls[0], answer.raw))
            choice = "none"
            continue
        run.messages.append(answer.message())
        if not answer.tool_calls:
            extra = f" (ignored calls: {'; '.join(answer.problems)})" \
                if answer.problems else ""
            note(Step(n, "answer", f"model answers: {answer.text.strip()}{extra}",
                      raw=answer.raw))
            run.answer, run.stopped = answer.text.strip(), "answer"
            return run
        for call, key in zip(answer.tool_calls, keys):
            done.add(key)
            note(Step(n, "call", f"model calls {call}", call, answer.raw))
            tool = by_name.get(call.name)
            try:
                if tool is None:
                    raise UnknownTool(call.name, list(by_name))
                if tool.confirm and not (ask is not None and ask(call)):
                    kind, result = "refused", REFUSED
                else:
                    kind, result = "result", call_tool(tool, call, timeout)
            except KitError as exc:
                kind, result = "error", str(exc)
            note(Step(n, kind, f"{call.name} -> {result}", call))
            run.messages.append({"role": "tool", "tool_call_id": call.id,
                                 "name": call.name, "content": result})
    note(Step(max_steps, "limit", f"stopped: {max_steps} turns without a final "
              "answer (the step limit); raise max_steps or simplify the task"))
    run.stopped = "step limit"
    return run
