"""Tool calls: the prompt, the grammar, the parsed answer (notebook 09; used by every engine and the server).

The model writes a call as `<tool_call>{"name": ..., "arguments": {...}}
</tool_call>` (the Hermes/Qwen style). A grammar made from the tools' schemas
lets it write only calls that parse and fit, or (tool_choice "auto") plain
words instead. A template that speaks tools (Qwen's) lays them out itself;
for others the kit describes the tools in a system message and says so.

>>> answer = tool_chat(model, [{"role": "user", "content": "2+3?"}], [add])
>>> answer.raw, answer.tool_calls
('<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>',
 [ToolCall(name='add', arguments={'a': 2, 'b': 3}, id='call_...')])
"""
from __future__ import annotations

import json
import re
from dataclasses import replace

from kit.engines.base import Sampling, StopScanner, Stream
from kit.errors import BadSchema, BadTool, NoToolCall, ToolsUnsupported
from kit.engines.tool_schema import CLOSE, OPEN, Tool, ToolCall, as_tools, chosen

OPENERS = (OPEN, "```json", "{")  # how answers that are calls begin
MAX_PARALLEL = 4  # calls in one answer, when parallel calls are allowed
FALLBACK_NOTICE = ("This model's chat template has no tool support; the kit "
                   "described the tools in a system message instead.")
SYSTEM_TOOLS = (
    "You can call tools (functions) to help you answer. Their signatures, "
    "in JSON:\n<tools>\n{tools}\n</tools>\nTo call one, answer with only:\n"
    "<tool_call>\n{{\"name\": <tool name>, \"arguments\": <arguments as a JSON "
    "object>}}\n</tool_call>")


# -- the text the model sees and writes --------------------------------------

def template_speaks_tools(template: str | None) -> bool:
    """True when a chat template renders `tools` itself in the <tool_call> style."""
    return bool(template) and "tools" in template and OPEN in template


def call_grammar(tools: list[Tool], mode: str, parallel: bool = True) -> str | None:
    """GBNF for an answer: text or calls (auto), calls only (required), None."""
    from kit.structured import to_grammar

    if mode == "none":
        return None
    alts = [{"type": "object", "properties": {"name": {"const": t.name},
                                               "arguments": t.parameters},
             "required": ["name", "arguments"]} for t in tools]
    try:
        gbnf = to_grammar({"anyOf": alts})
    except BadSchema as exc:
        raise BadTool(", ".join(t.name for t in tools), exc.problem) from exc
    gbnf = re.sub(r"^root ::=", "kit-call ::=", gbnf, flags=re.M)
    more = f'("\\n{OPEN}\\n" kit-call "\\n{CLOSE}"){{0,{MAX_PARALLEL - 1}}}' \
        if parallel else ""
    calls = f'"{OPEN}\\n" kit-call "\\n{CLOSE}" {more}'
    if mode == "required":
        return gbnf + f"\nroot ::= {calls}\n"
    # auto: calls (tagged, or the way small models often write them: bare or
    # in a ```json block, held to the schema all the same), or plain words
    # that open with none of those
    return gbnf + (f'\nroot ::= {calls} | "```json\\n" kit-call "\\n```" | kit-call'
                   ' | [^<`{] [^\\x00]*\n')


def _arguments(args, where: str) -> dict:
    if isinstance(args, str):
        try:
            args = json.loads(args or "{}")
        except ValueError as exc:
            raise BadTool(where, f"the arguments of a tool call are not JSON "
                          f"({exc})") from exc
    if not isinstance(args, dict):
        raise BadTool(where, "the arguments of a tool call must be a JSON object")
    return args


def prepare_messages(messages, tools: list[Tool], native: bool) -> list[dict]:
    """Messages as the template wants them; without native support, as text."""
    out = []
    for m in messages:
        m = dict(m)
        calls = []
        for c in m.pop("tool_calls", None) or []:
            f = c.get("function", c)
            calls.append({"id": c.get("id"), "type": "function", "function": {
                "name": f.get("name"), "arguments": _arguments(
                    f.get("arguments"), str(f.get("name")))}})
        if native:
            if calls:
                m["tool_calls"] = calls
            m["content"] = m.get("content") or ""
        elif calls:
            blocks = [f"{OPEN}\n{json.dumps(c['function'])}\n{CLOSE}" for c in calls]
            m["content"] = "\n".join(filter(None, [m.get("content")] + blocks))
        elif m.get("role") == "tool":
            m = {"role": "user", "content": f"<tool_response>\n{m.get('content')}"
                 "\n</tool_response>"}
        m["content"] = m.get("content") or ""
        out.append(m)
    if not native and tools:
        desc = SYSTEM_TOOLS.format(tools="\n".join(json.dumps(t.schema())
                                                   for t in tools))
        if out and out[0].get("role") == "system":
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + desc}
        else:
            out.insert(0, {"role": "system", "content": desc})
    return out


def parse_calls(text: str, tools: list[Tool]) -> tuple[str, list[ToolCall], list[str]]:
    """(text outside calls, valid calls, problems) from what the model wrote."""
    from kit.structured import validate

    by_name = {t.name: t for t in tools}
    calls, problems = [], []
    pattern = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|$)",
                         re.S)
    for body in pattern.findall(text):
        try:  # a closing tag cut off by max_tokens does not spoil a whole call
            obj, end = json.JSONDecoder().raw_decode(body.strip())
            if body.strip()[end:].strip() and not CLOSE.startswith(
                    body.strip()[end:].strip()):
                raise ValueError("text after the call")
        except ValueError:
            problems.append(f"a call is not complete JSON: {body.strip()[:60]!r}")
            continue
        if not isinstance(obj, dict) or "name" not in obj:
            problems.append(f"a call has no tool name: {body.strip()[:60]!r}")
            continue
        name, args = obj.get("name"), obj.get("arguments", obj.get("parameters", {}))
        if name not in by_name:
            problems.append(f"it called {name!r}, which was not offered")
            continue
        errs = validate(args, by_name[name].parameters) if isinstance(args, dict) \
            else ["arguments are not an object"]
        if errs:
            problems.append(f"the arguments for {name} do not fit: {'; '.join(errs)}")
            continue
        calls.append(ToolCall(name, args))
    words = pattern.sub("", text).strip()
    if not calls and not problems and words[:1] in ("`", "{"):
        bare = re.fullmatch(r"(?:```json\s*)?(\{.*\})\s*(?:```)?", words, re.S)
        if bare and re.search(r'"name"\s*:', bare.group(1)):  # a call without tags
            _, calls, problems = parse_calls(f"{OPEN}{bare.group(1)}{CLOSE}", tools)
            return "", calls, problems
    return words, calls, problems


class ToolStream(Stream):
    """The words of an answer as they come; afterwards `.tool_calls` and `.raw`.

    `.raw` is everything the model wrote (calls included), `.text` the words
    outside calls, `.called` whether it called tools, `.problems` any calls
    that did not parse or fit (possible only without the grammar).
    """

    def __init__(self, make, tools: list[Tool], mode: str, notices=()):
        super().__init__(self._pieces)
        self._make, self.tools, self.mode = make, tools, mode
        self._notices, self._inner = list(notices), None
        self._raw, self._calls, self._problems = "", [], []

    def _done(self):
        if not self.done:
            self.text  # noqa: B018 (runs the generation to its end)
        return self

    raw = property(lambda self: self._done()._raw, doc="all the model wrote")
    tool_calls = property(lambda self: self._done()._calls, doc="the valid calls")
    problems = property(lambda self: self._done()._problems, doc="invalid calls")
    called = property(lambda self: bool(self.tool_calls), doc="did it call tools?")

    def cancel(self) -> None:
        super().cancel()
        if self._inner is not None:
            self._inner.cancel()

    def _pieces(self, _):
        self._inner = inner = self._make()
        self.stats = inner.stats
        self.stats.notices.extend(self._notices)
        # Words pass on as they come; a call's text is held back (parsed below).
        words = StopScanner([] if self.mode == "none" else [OPEN])
        held, deciding, silent = "", self.mode != "none", False
        for piece in inner:
            self._raw += piece
            if self.cancelled:
                inner.cancel()
            if deciding:  # does the answer open with a call?
                held += piece
                start = held.lstrip()
                if any(o.startswith(start) for o in OPENERS):
                    continue
                deciding, silent = False, start.startswith(OPENERS)
                piece, held = held, ""
            out = "" if silent else words.feed(piece)
            if out:
                yield out
        tail = "" if silent else words.feed(held) + words.flush()
        if tail:
            yield tail
        if self.mode != "none":
            _, self._calls, self._problems = parse_calls(self._raw, self.tools)
        if self.mode == "required" and not self._calls:
            if self.stats.stop_reason in ("length", "context"):
                self._problems.append(f"it was cut off after "
                                      f"{self.stats.generated_tokens} tokens")
            raise NoToolCall(self._raw, self._problems)

    def message(self) -> dict:
        """This answer as an assistant message, to append to the conversation."""
        out = {"role": "assistant", "content": self.text.strip()}
        if self.tool_calls:
            out["tool_calls"] = [c.openai() for c in self.tool_calls]
        return out

    def __repr__(self) -> str:
        if not self.done:
            return "<ToolStream: not run yet>"
        if self.tool_calls:
            return "<tool calls: " + "; ".join(map(str, self.tool_calls)) + ">"
        return f"<answer: {self.text!r}>"


def tool_chat(engine, messages, tools, tool_choice="auto", sampling=None,
              constrain: bool = True, parallel: bool = True, **options) -> ToolStream:
    """What engine.chat(..., tools=...) does: see the module docstring.

    constrain=False lets the model write freely (to see what the grammar
    prevents); parallel=False allows one call per answer; other options are
    sampling settings (temperature, max_tokens...).
    """
    sampling = Sampling.make(sampling, **options)
    tools = as_tools(tools)
    mode, allowed = chosen(tools, tool_choice)
    if not tools:  # an empty list: a plain answer, or nothing to call at all
        if mode == "required":
            raise BadTool("required", "tool_choice requires a call, but no tools "
                          "were offered")
        mode = "none"
    kind = engine.capabilities.get("tools")
    if kind == "server":
        from kit.engines.tool_remote import remote_answer

        return ToolStream(lambda: remote_answer(engine, messages, tools, tool_choice,
                                                sampling), tools, mode)
    if kind != "template":
        raise ToolsUnsupported(f"The {engine.engine_name} engine", "it cannot read "
                               "a chat template's tool section or follow a grammar")
    native = template_speaks_tools(getattr(engine, "chat_template", None))
    shown = [] if mode == "none" else tools
    prompt = engine.format_chat(prepare_messages(messages, shown, native),
                                tools=[t.schema() for t in shown] if native and shown
                                else None)
    grammar = call_grammar(allowed, mode, parallel) if constrain else None
    notices = [] if native or not shown else [FALLBACK_NOTICE]
    # Stop strings and calls do not mix: the grammar decides where calls end.
    s = replace(sampling, stop=())
    return ToolStream(lambda: engine.complete(prompt, s, grammar=grammar), tools,
                      mode, notices)
