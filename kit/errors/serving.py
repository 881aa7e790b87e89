"""Errors of engines, structured output, the local server, chat, dashboards, quizzes (01, 04-07)."""
from __future__ import annotations

from kit.errors.base import KitError


# ---- structured output and the local API server (kit.structured, kit.server) --

class BadSchema(KitError):
    """A JSON schema the kit cannot turn into a grammar (or not JSON at all)."""

    def __init__(self, problem: str):
        super().__init__(
            f"This JSON schema cannot be used: {problem}. Check it (for example "
            "at https://json-schema.org/learn), keep to plain types, properties, "
            "required, enum, arrays and local $ref, or pass \"json\" to ask for "
            "any JSON object."
        )
        self.problem = problem


class StructuredOutputInvalid(KitError):
    """The model's answer does not parse or does not match the schema."""

    def __init__(self, problem: str, text: str = ""):
        super().__init__(
            f"The answer is not valid for the schema: {problem}. If it was cut "
            "off, raise max_tokens; otherwise describe the fields in the prompt "
            "or try a larger model."
        )
        self.problem, self.text = problem, text


class ApiKeyRequired(KitError):
    def __init__(self, host: str):
        super().__init__(
            f"Serving on {host} lets other machines reach the server, so it "
            "needs an API key. Set one in the environment (export "
            "KIT_API_KEY=...) and pass it, or run `kit serve --host HOST`, "
            "which creates a key file for you. Leave out --host to serve only "
            "this computer (127.0.0.1), where no key is needed."
        )


class PortInUse(KitError):
    def __init__(self, host: str, port: int, why: str = ""):
        super().__init__(
            f"Cannot listen on {host}:{port}{f' ({why})' if why else ''}. "
            "Another server (another `kit serve`, Ollama, LM Studio...) may be "
            "using it: stop it, or choose another port with --port (--port 0 "
            "picks a free one)."
        )


class ServerStartFailed(KitError):
    def __init__(self, detail: str):
        super().__init__(
            f"The kit server did not start: {detail}. Run `kit serve` in a "
            "terminal to see the whole message."
        )


class ServerBusy(KitError):
    """Too many requests already wait for one model (HTTP 503)."""

    def __init__(self, model: str, waiting: int, retry_after: int):
        super().__init__(
            f"The model {model!r} is busy: {waiting} requests are already "
            f"waiting. Try again in about {retry_after} s, or start the server "
            "with a longer queue (--max-queue)."
        )
        self.retry_after = retry_after


class KeyNameTaken(KitError):
    def __init__(self, name: str):
        super().__init__(
            f"A key called {name!r} already exists. Choose another name, or "
            f"revoke it first (`kit keys revoke {name}`) and add it again."
        )


class UnknownKey(KitError):
    def __init__(self, name: str, known=()):
        super().__init__(
            f"There is no key called {name!r}. Keys: {', '.join(known) or 'none'} "
            "(see `kit keys list`)."
        )


class ModelNotAllowed(KitError):
    """A room key used for a model outside its allow-list (HTTP 403)."""

    def __init__(self, key_name: str, model: str, allowed=()):
        super().__init__(
            f"The key {key_name!r} may not use {model!r}; it may use: "
            f"{', '.join(allowed)}. Ask the person running the server."
        )


class RemoteError(KitError):
    """The server is down, too slow, or answered something unexpected."""


class BadRequest(ValueError):
    """A request the server understands but cannot serve (HTTP 400)."""


class ClientGone(Exception):
    """The client closed the connection before its answer began."""


class ChatTemplateError(KitError):
    """A model file's chat template is broken, unsafe, or never finishes."""

    template = ("The chat template in {name} cannot be used: {problem}. Send plain "
                "text instead (model.generate(...), `kit run --raw`), or use another "
                "copy of this model (download it again).")


class NoSchemaSupport(KitError):
    template = ("The {engine} engine cannot follow a JSON schema; use a llama.cpp "
                "model for --json-schema.")


# ---- engines, comparing, measuring (kit.compare, kit.bench, kit.evaluate) ----

class UnknownEngine(KitError):
    template = ("Unknown engine {engine!r} in {spec!r}. Write NAME@ENGINE with ENGINE "
                "one of {choices}, or NAME@http://HOST:PORT for a model server.")


class ListedTwice(KitError):
    template = "{label} is listed twice; compare each model once."


class NoSuchTensor(KitError):
    template = ("No tensor {tensor!r} in this model. Some of its names: {names}, ... "
                "(all of them: kit.gguf_check.scan(path).tensors)")


class DecodeFailed(KitError):
    template = ("llama.cpp could not evaluate {n} tokens (code {code}). Lower "
                "--pp/--tg or load with a larger context.")


class BenchNeedsLlamaCpp(KitError):
    template = ("kit.bench measures 'pp' or 'tg' on llama.cpp engines, not {test!r} "
                "on {engine!r}: load the model with engine='llamacpp'.")


class NotABenchFile(KitError):
    template = ("{path} is not a kit benchmark file ({problem}). Make one with "
                "`kit bench MODEL --json > FILE`.")


class LoadFailed(KitError):
    template = "llama.cpp could not load {path}: {problem}. Check it with `kit info`."


class NothingToEvaluate(KitError):
    template = "No models to evaluate. Name at least one, e.g. smollm2:135m."


class OtherTokens(KitError):
    template = ("{name} reads the text as other tokens than {reference}: KL divergence "
                "compares two versions of the same model. Compare these by "
                "perplexity alone.")


# ---- chat and dashboards (kit.chat, kit dashboard) ---------------------------

class EmptyMessage(KitError):
    template = "The message is empty: type a question first."


class FolderNotWritable(KitError):
    template = ("Cannot {what} {folder} ({problem}). Choose a folder you can write "
                "to, e.g. your home folder.")


class UnknownDashboard(KitError):
    template = "No dashboard named {name!r}. Choose one of: {choices}."


class DashboardMissing(KitError):
    template = ("The dashboard notebook {path} is missing. Install the kit from its "
                "wheel or repository (both carry the notebooks), or from a workshop "
                "pack (INSTALL.txt in the pack), then run `kit dashboard` again.")


class NoFreePort(KitError):
    template = "No free port between {first} and {last}: pass another one with --port."


class DashboardPortBusy(KitError):
    template = ("Port {port} is in use: choose another with --port, or leave --port "
                "out to pick a free one.")


class VoilaStopped(KitError):
    template = ("Voila stopped at once (exit code {code}); its messages are above. "
                "Check that `python -m voila --version` works.")


class VoilaTimedOut(KitError):
    template = ("Voila did not answer on {url} within {timeout:.0f} s. Try again; if "
                "it repeats, run `python -m voila` to see why.")


# ---- self-check quizzes (kit.quiz) -------------------------------------------

class QuizNotFound(KitError):
    def __init__(self, quiz_id: str, available: list[str]):
        super().__init__(
            f"No quiz {quiz_id!r}. Quizzes: {', '.join(available) or 'none'}; "
            "each is named after its notebook's number, e.g. show_quiz(\"01\")."
        )
        self.quiz_id = quiz_id


class BadQuiz(KitError):
    def __init__(self, source, problem: str):
        super().__init__(
            f"The quiz file {source} cannot be used: {problem}. Each question "
            "needs a prompt and 2 to 6 choices, each choice a text and a "
            "\"why\", and exactly one choice marked \"correct\": true."
        )
        self.source = source


# ---- a JupyterHub for a room (kit.room.hub) ----------------------------------

class HubMissing(KitError):
    template = ("JupyterHub is not installed in this Python. Install it with "
                "`pip install 'local-llm-workshop-kit[hub]'` (or `pip install jupyterhub`), "
                "then start the room again.")


class NpmMissing(KitError):
    template = ("JupyterHub's proxy (configurable-http-proxy) comes from npm, but "
                "`{missing}` was not found. Install Node.js and npm: `sudo apt-get "
                "install nodejs npm` on Debian or Ubuntu, or from https://nodejs.org.")


class HubStartFailed(KitError):
    template = ("{what} did not start: {detail}. Its log says more (hub.log in the "
                "room folder); check that the ports are free and try again.")


class HubNotRunning(KitError):
    template = ("No JupyterHub room is running from {folder}. Start one with `kit hub "
                "start` (or name its folder with --dir).")


class HubUnsafe(KitError):
    template = ("A room of {learners} learners would run them all as one system user, "
                "because {reason}: each learner could read the others' keys, the room's "
                "password and the server's key. Start the hub as root (sudo kit hub "
                "start) so it gives each learner a user of their own, or accept the "
                "risk: --shared-user-unsafe (start_room(..., shared_user=True)).")
