"""The agent loop: ask, run the tools it calls, show it the results, ask again.

Every step is kept (and printed as it happens). A call repeated with the
same arguments is not run again, and a step limit stops a model that keeps
calling tools: either way the model is asked once more (ONCE_MORE, a user
message) without tools, so the run ends with an answer in words. A tool that hangs is given up after
`timeout` seconds, an error is shown to the model as the tool's result, and
a tool marked with needs_confirmation runs only after a person says yes (a
no ends the run with a sentence saying what was not done).

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

from kit.engines.base import STOP_REASONS
from kit.engines.tool_schema import ToolCall, as_tools
from kit.errors import BadTool, KitError, ToolFailed, UnknownTool

REFUSED = "A person did not allow this call, so it did not run."
ONCE_MORE = ("Now answer my question in words, using only the tool results "
             "above. No more tool calls.")


@dataclass
class Step:
    """One thing that happened: a call, a tool's result, or the answer."""

    number: int
    kind: str  # "call", "result", "error", "refused", "repeat", "limit", "answer"
    text: str
    call: ToolCall | None = None
    raw: str = ""  # what the model wrote, for "call" and "answer" steps

    def line(self) -> str:
        return f"step {self.number}  {self.text}"


@dataclass
class Run:
    """The whole conversation, the steps, and the final answer, always in words."""

    steps: list[Step] = field(default_factory=list)
    messages: list[dict] = field(default_factory=list)
    answer: str = ""
    # how it ended: "answer" (by itself), "repeat" or "step limit" (then asked
    # once more without tools), "refused" (a person said no to a call)
    stopped: str = ""
    finish_reason: str = ""  # of the last answer: "eos", "length" (max_tokens)...
    cut: bool = False  # the answer was cut off (max_tokens or the context)

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
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "\n".join(value)  # one line each: easier to read than JSON
    return json.dumps(value, default=str, ensure_ascii=False)


def refused_sentence(tool, call: ToolCall) -> str:
    """What did not happen, in words: the tool's own sentence if it has one.

    A tool may carry `kit_refused = "Book {book_id} was not deleted."`; the
    kit's sentence otherwise. The kit says it, not the model, which might
    claim that the deletion happened.
    """
    said = getattr(tool.function, "kit_refused", None) if tool else None
    try:
        if said:
            return said.format(**call.arguments)
    except (KeyError, IndexError, ValueError):  # a sentence naming other arguments
        pass
    return f"Nothing was done: {call} needs a person's yes, and it was not given."


def run_tools(model, messages, tools, max_steps: int = 5, timeout: float = 10.0,
              ask=None, tool_choice="auto", verbose: bool = True, **options) -> Run:
    """Let `model` use `tools` until it answers in words; `run.answer` is words.

    When the model repeats a call it has the result of, or still calls tools
    after max_steps turns, it is asked once more without tools (and the steps
    say so). `ask(call)` decides about tools marked needs_confirmation (return
    True to run); without it they never run, and a refusal ends the run with
    a sentence saying what was not done. tool_choice applies to the first
    turn. Other keyword options go to model.chat (temperature, max_tokens...).
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

    def answered(n: int, answer, how: str) -> Run:
        """The model's words end the run; say if they were cut or missing."""
        text = answer.text.split("<tool_call>")[0].strip()  # a call written as text
        run.messages.append({"role": "assistant", "content": text})
        run.finish_reason = answer.stats.stop_reason
        run.cut = run.finish_reason in ("length", "context")
        extra = f" (ignored calls: {'; '.join(answer.problems)})" \
            if answer.problems else ""
        if run.cut:
            extra += (f" [cut off: {STOP_REASONS[run.finish_reason]} after "
                      f"{answer.stats.generated_tokens} tokens; raise max_tokens "
                      "for the rest]")
        if not text:  # said plainly; the results stay out of it, so nothing
            # the model did not write can pass for its answer
            calls = len([s for s in run.steps if s.kind == "call"])
            text = (f"The model wrote no answer in words after {calls} tool "
                    f"call{'s' * (calls != 1)}; the results are in run.messages.")
            extra += " [no words: the kit says so instead]"
        note(Step(n, "answer", f"model answers: {text}{extra}", raw=answer.raw))
        run.answer, run.stopped = text, how
        return run

    def once_more(n: int, how: str) -> Run:
        """Ask without tools, so the next words are an answer (step `n`)."""
        run.messages.append({"role": "user", "content": ONCE_MORE})
        answer = model.chat(run.messages, tools=tools, tool_choice="none", **options)
        return answered(n, answer, how)

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
                      "result is above, so it is asked once more, without tools",
                      answer.tool_calls[0], answer.raw))
            return once_more(n + 1, "repeat")
        if not answer.tool_calls:
            return answered(n, answer, "answer")
        run.messages.append(answer.message())
        refused = []
        for call, key in zip(answer.tool_calls, keys):
            done.add(key)
            note(Step(n, "call", f"model calls {call}", call, answer.raw))
            tool = by_name.get(call.name)
            try:
                if tool is None:
                    raise UnknownTool(call.name, list(by_name))
                if tool.confirm and not (ask is not None and ask(call)):
                    kind, result = "refused", REFUSED
                    refused.append(refused_sentence(tool, call))
                else:
                    kind, result = "result", call_tool(tool, call, timeout)
            except KitError as exc:
                kind, result = "error", str(exc)
            note(Step(n, kind, f"{call.name} -> {result}", call))
            run.messages.append({"role": "tool", "tool_call_id": call.id,
                                 "name": call.name, "content": result})
        if refused:  # a person said no: the run ends, and says what was not done
            run.answer, run.stopped = " ".join(refused), "refused"
            run.messages.append({"role": "assistant", "content": run.answer})
            note(Step(n, "answer", f"the run ends: {run.answer}"))
            return run
    note(Step(max_steps, "limit", f"the step limit ({max_steps} turns) is reached: "
              "the model is asked once more, without tools"))
    return once_more(max_steps + 1, "step limit")
