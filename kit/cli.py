"""The `kit` command: Ollama-style verbs over the same functions as the notebooks."""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

from kit.errors import DiskFull, EmptyPrompt, KitError, NoSchemaSupport, RegistryDamaged
from kit.util import DISK_FULL, human_size, text_table
import kit.commands
from kit.chat import Conversation
from kit.doctor import format_report, run_checks
from kit.engines import load
from kit.engines.base import Sampling
from kit.modelfile import read_facts
from kit.models.pull import pull
from kit.models.registry import check_registry, list_models, move_aside, resolve
from kit.models.starter import install_starter
from kit.structured import load_schema

HELP_CHAT = """Commands:
  /set temperature 0.2   change a sampling setting (temperature, top_p, top_k,
                         min_p, repeat_penalty, seed, max_tokens)
  /set system TEXT       set the system prompt (clears the conversation)
  /clear                 forget the conversation
  /bye                   leave (Ctrl-D works too; Ctrl-C stops an answer)
  /help                  this help"""


def _sampling_args(p):
    g = p.add_argument_group("sampling")
    g.add_argument("--temperature", type=float)
    g.add_argument("--top-p", type=float)
    g.add_argument("--top-k", type=int)
    g.add_argument("--min-p", type=float)
    g.add_argument("--repeat-penalty", type=float)
    g.add_argument("--seed", type=int)
    g.add_argument("--max-tokens", type=int)
    g.add_argument("--stop", action="append", help="stop string (repeatable)")


def _load_args(p):
    p.add_argument("--ctx", type=int, help="context size in tokens (default 2048)")
    p.add_argument("--threads", type=int)
    p.add_argument("--gpu-layers", type=int, default=0, help="-1 = all")
    p.add_argument("--force", action="store_true", help="load even if it may not fit")


def _sampling(a) -> dict:
    keys = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed",
            "max_tokens")
    out = {k: getattr(a, k) for k in keys}
    if a.stop:
        out["stop"] = tuple(a.stop)
    return out


def _check_sampling(a) -> None:
    """Refuse a bad setting (e.g. --temperature -1) before loading anything."""
    Sampling.make(**_sampling(a))


def for_terminal(message: str) -> str:
    """An error message with its Python spelling turned into command-line options.

    >>> for_terminal("Pass force=True (CLI: --force) to replace it")
    'Pass --force to replace it'
    """
    message = re.sub(r"\b\w+=[^\s()]+ \(CLI: ([^)]+)\)", r"\1", message)
    return re.sub(r"\(([^()]*), CLI: ([^)]+)\)", r"(\2)", message)


def _stream_to_terminal(stream) -> bool:
    """Print an answer as it comes; Ctrl-C stops the answer. True if stopped."""
    pieces = iter(stream)
    try:
        for piece in pieces:
            print(piece, end="", flush=True)
        return False
    except KeyboardInterrupt:
        stream.cancel()
        try:  # the engine sees the cancel and ends cleanly, with its figures
            for piece in pieces:
                print(piece, end="", flush=True)
        except KeyboardInterrupt:
            pass
        return True


def _figures(stream) -> str:
    if stream.stats.stop_reason:
        return stream.stats.line()
    # interrupted inside the engine: it could not add up its figures
    return (f"Stopped by you (Ctrl-C) after {len(stream.text)} characters; no "
            "speed figures for an answer cut off this way.")


def _load(a, quiet=False):
    return load(a.model, n_ctx=a.ctx, n_threads=a.threads, n_gpu_layers=a.gpu_layers,
                check_fit=not a.force, quiet=quiet)


def cmd_doctor(a) -> int:
    checks = run_checks(hub_timeout=a.timeout)
    if a.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        print(format_report(checks))
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def _reset_damaged_list(reset: bool) -> None:
    """A damaged model list: move it aside when asked (flag, or a yes)."""

    try:
        check_registry()
        return
    except RegistryDamaged as exc:
        if not reset:
            if not sys.stdin.isatty():
                raise
            print(f"{exc}\n")
            if input("Move it aside and start a new list now? [y/N] "
                     ).strip().lower() not in ("y", "yes"):
                raise
    where = move_aside()
    if where:
        print(f"Moved the damaged model list to {where}; starting a new one.")


def cmd_setup(a) -> int:
    _reset_damaged_list(a.reset_list)  # before any download
    install_starter(force=a.force)
    if a.with_models:  # extra models, e.g. qwen2.5-coder:1.5b, all-minilm:l6-v2

        for name in a.with_models:
            pull(name)
    return 0


def cmd_list(a) -> int:
    rows = list_models()
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("No models yet. Run `kit setup` to install the starter model.")
        return 0
    print(text_table([{"name": r["name"], "size": human_size(r["size"]),
                       "quant": r["quantization"], "path": r["path"]} for r in rows],
                     right=("size",)))
    return 0


def cmd_info(a) -> int:
    facts = read_facts(resolve(a.model).path)
    if a.json:
        print(json.dumps(facts.to_dict(), indent=2))
        return 0
    print(facts.summary())
    for row in facts.quant_summary:
        print(f"  {row.type:<8} {row.tensors:>4} tensors  {human_size(row.bytes):>8}")
    return 0


def cmd_run(a) -> int:
    _check_sampling(a)
    if a.prompt is None and sys.stdin.isatty() and not a.json:
        # no prompt at a terminal: talk, as `ollama run MODEL` does
        print("No prompt given: starting a chat. (Give a prompt to get one answer, "
              "or pipe text in.)", file=sys.stderr)
        a.system = None
        return cmd_chat(a)
    prompt = a.prompt if a.prompt is not None else sys.stdin.read()
    if not prompt.strip():
        raise EmptyPrompt()
    extra = {}
    if a.json_schema:  # checked before loading: a bad file fails fast

        extra["json_schema"] = load_schema(a.json_schema)
    model = _load(a, quiet=a.json or bool(extra))  # stdout: the JSON alone
    if extra and not model.capabilities.get("json_schema"):
        raise NoSchemaSupport(engine=model.engine_name)
    if a.raw:
        stream = model.generate(prompt, **_sampling(a), **extra)
    else:
        stream = model.chat([{"role": "user", "content": prompt}], **_sampling(a),
                            **extra)
    if a.json:
        text = stream.text
        print(json.dumps({"model": model.name, "answer": text,
                          "stats": stream.stats.to_dict()}, ensure_ascii=False))
        return 0
    stopped = _stream_to_terminal(stream)
    print()
    for note in stream.stats.notices:
        print(note, file=sys.stderr)
    print(_figures(stream), file=sys.stderr)
    return 130 if stopped else 0  # the shell's code for "stopped by Ctrl-C"


def _chat_set(conv, opts, line) -> str:
    parts = line.split(None, 2)
    if len(parts) < 3:
        return "Usage: /set NAME VALUE  (see /help)"
    key, value = parts[1], parts[2]
    if key == "system":
        conv.system = value
        conv.clear()
        return "System prompt set; conversation cleared."
    casts = {"top_k": int, "seed": int, "max_tokens": int}
    if key not in {"temperature", "top_p", "min_p", "repeat_penalty", *casts}:
        return f"Unknown setting {key!r}. See /help."
    cast = casts.get(key, float)
    try:
        number = cast(value)
    except ValueError:
        kind = "a whole number" if cast is int else "a number"
        example = {"seed": "42", "top_k": "40", "max_tokens": "256"}.get(key, "0.7")
        return f"Not set: {key} must be {kind}, e.g. /set {key} {example}"
    try:
        new = {**opts, key: number}
        Sampling.make(**new)  # validate now, so a typo is caught at /set
    except KitError as exc:
        return f"Not set: {exc}"
    opts.clear()
    opts.update(new)
    return f"Set {key} to {value}."


def _read_line(prompt: str) -> str:
    """input(), except from a pipe: there it waits in short steps, so Ctrl-C
    is felt at once even when the signal lands on one of llama.cpp's or
    numpy's threads (a read() in the main thread would not notice it)."""
    if sys.stdin.isatty():
        return input(prompt)  # a terminal keeps its line editing and history
    if os.name != "posix":
        text = input(prompt)
        print(text)  # a pipe's text is not echoed: show the question
        return text
    import select

    sys.stdout.write(prompt)
    sys.stdout.flush()
    fd, line = sys.stdin.fileno(), b""
    while True:  # byte by byte from the pipe itself: nothing waits in a buffer
        while not select.select([fd], [], [], 0.25)[0]:
            pass  # between waits Python runs the Ctrl-C handler
        ch = os.read(fd, 1)
        if not ch and not line:
            raise EOFError
        if not ch or ch == b"\n":  # echo it, so a transcript shows the question
            text = line.decode("utf-8", "replace")
            print(text, flush=True)
            return text
        line += ch


def cmd_chat(a) -> int:
    _check_sampling(a)
    model = _load(a)
    conv = Conversation(system=a.system or "")
    opts = {k: v for k, v in _sampling(a).items() if v is not None}
    print("Chatting with", model.name, "- type /help for commands, /bye to leave.")
    while True:
        try:
            line = _read_line(">>> ").strip()
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:  # as in Ollama: Ctrl-C does not leave
            print("\n(Ctrl-C stops an answer. To leave, type /bye or press Ctrl-D.)")
            continue
        if not line:
            continue
        if line.startswith("/"):
            cmd = line.split()[0]
            if cmd in ("/bye", "/exit", "/quit"):
                return 0
            if cmd == "/clear":
                conv.clear()
                print("Conversation cleared.")
            elif cmd == "/set":
                print(_chat_set(conv, opts, line))
            elif cmd in ("/help", "/?"):
                print(HELP_CHAT)
            else:
                print(f"Unknown command {cmd}. " + HELP_CHAT)
            continue
        conv.add("user", line)
        try:
            stream = model.chat(conv.fit(model), **opts)
        except KitError as exc:
            conv.turns.pop()
            print(f"Error: {for_terminal(str(exc))}")
            continue
        for note in conv.notices:
            print(f"[{note}]")
        conv.notices.clear()
        _stream_to_terminal(stream)
        print()
        conv.add("assistant", stream.text)  # a stopped answer is kept as it was
        print(f"[{_figures(stream)}]")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kit", description="Run open language models "
                                "on your own computer.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    d = sub.add_parser("doctor", help="check this machine")
    d.add_argument("--json", action="store_true")
    d.add_argument("--timeout", type=float, default=2.0, help="Hub check timeout (s)")
    d.set_defaults(func=cmd_doctor)
    s = sub.add_parser("setup", help="install and verify the starter model")
    s.add_argument("--force", action="store_true", help="fetch it again")
    s.add_argument("--reset-list", action="store_true",
                   help="move a damaged model list (models.json) aside first")
    s.add_argument("--with", dest="with_models", action="append", metavar="MODEL",
                   help="also install this model (repeatable): qwen2.5-coder:1.5b, "
                   "all-minilm:l6-v2, or any `kit pull` name")
    s.set_defaults(func=cmd_setup)
    ls = sub.add_parser("list", help="installed models")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    i = sub.add_parser("info", help="facts about a model, without loading it")
    i.add_argument("model", nargs="?", default=None)
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)
    r = sub.add_parser("run", help="answer one prompt, streaming")
    r.add_argument("model")
    r.add_argument("prompt", nargs="?")
    r.add_argument("--json", action="store_true", help="answer and figures as JSON")
    r.add_argument("--raw", action="store_true", help="plain completion, no chat template")
    r.add_argument("--json-schema", metavar="FILE",
                   help="answer with JSON that fits this JSON schema file")
    _sampling_args(r)
    _load_args(r)
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("chat", help="talk with a model in the terminal")
    c.add_argument("model", nargs="?", default=None)
    c.add_argument("--system", help="system prompt")
    _sampling_args(c)
    _load_args(c)
    c.set_defaults(func=cmd_chat)
    _register_command_modules(sub)
    return p


def _register_command_modules(sub) -> None:
    """Let each module in kit/commands/ add its verbs."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(kit.commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"kit.commands.{info.name}")
        module.register(sub)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `kit` alone: show what it can do
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except KitError as exc:
        print(f"Error: {for_terminal(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # `kit info --json | head`: the reader left early
        # Python would complain again while flushing stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a full disk anywhere: say so, not a traceback
        if exc.errno not in DISK_FULL:
            raise
        print(f"Error: {DiskFull(exc.filename or 'a file', exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopped (Ctrl-C).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
