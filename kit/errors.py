"""Every error the kit raises on purpose: what went wrong, then the next step.

>>> raise ModelNotFound("llama9:1t", installed=["smollm2:135m"])
Traceback (most recent call last):
...
kit.errors.ModelNotFound: No model named 'llama9:1t'. Installed: smollm2:135m. ...
"""
from __future__ import annotations


class KitError(Exception):
    """Base class: the message already says what to do next.

    A subclass may give its message as a `template` filled from keyword
    arguments, which also become attributes: NoSuchTensor(tensor="x", names="a").
    """

    exit_code = 1
    template = ""

    def __init__(self, *args, **fields):
        if self.template and not args:
            args = (self.template.format(**fields),)
        super().__init__(*args)
        self.__dict__.update(fields)


class ModelNotFound(KitError):
    def __init__(self, name: str, installed: list[str] | None = None):
        names = ", ".join(installed or []) or "none yet"
        super().__init__(
            f"No model named {name!r}. Installed: {names}. "
            "Run `kit list` to see them, `kit setup` to install the starter "
            "model, or pass the path to a .gguf file."
        )
        self.name = name


class SetupFailed(KitError):
    """`kit setup` (the starter model, the model list) could not finish."""


class RegistryDamaged(SetupFailed):
    """models.json cannot be read: say so, and how to get out."""

    def __init__(self, path, exc: Exception):
        super().__init__(
            f"The model list {path} is damaged ({exc}). Run `kit setup "
            "--reset-list`: it keeps the damaged file beside it (dated), starts "
            "a new list and installs the starter model; then `kit import` your "
            "own files again. Your model files stay on disk."
        )
        self.path = path


class ModelFileMissing(KitError):
    def __init__(self, path):
        super().__init__(
            f"Model file not found: {path}. Check the path, or run `kit list` "
            "to see installed models."
        )


class BadModelFile(KitError):
    """A file that is not a usable GGUF model (truncated, corrupt, unsafe)."""

    def __init__(self, path, problem: str, fix: str | None = None):
        fix = fix or (
            "The file is damaged or incomplete: delete it and download it "
            "again (for the starter model: `kit setup --force`)."
        )
        super().__init__(f"{path} is not a usable GGUF model: {problem}. {fix}")
        self.path = path
        self.problem = problem


class EmptyPrompt(KitError):
    template = ("The prompt is empty: give one, e.g. kit run MODEL \"What is a "
                "library?\", or pipe text in.")


class BadParameter(KitError):
    def __init__(self, name: str, value, allowed: str):
        super().__init__(
            f"{name}={value!r} is "
            + ("out of range" if isinstance(value, (int, float)) else "not accepted")
            + f": {name} must be {allowed}."
        )
        self.name = name


class WontFit(KitError):
    def __init__(self, explanation: str):
        super().__init__(
            f"This model will not fit in memory: {explanation}. "
            "Choose a smaller model or quantization, lower the context size "
            "(n_ctx), or pass check_fit=False (CLI: --force) to try anyway."
        )


class PromptTooLong(KitError):
    def __init__(self, n_prompt: int, n_ctx: int):
        super().__init__(
            f"The prompt is {n_prompt} tokens but the context window holds "
            f"{n_ctx}. Shorten the prompt, clear old chat turns, or load the "
            f"model with a larger context (n_ctx > {n_prompt})."
        )
        self.n_prompt, self.n_ctx = n_prompt, n_ctx


class EngineMissing(KitError):
    def __init__(self, package: str, hint: str = ""):
        super().__init__(
            f"The Python package {package!r} is not installed or failed to "
            f"import. Install it with `pip install {package}`"
            + (f" ({hint})" if hint else "")
            + ", or see Troubleshooting in the README."
        )


# ---- finding and downloading models (kit.hub, kit.models.pull.pull) ---------------

class HubOffline(KitError):
    """No network (or HF_HUB_OFFLINE=1) and the file is not in the cache."""

    def __init__(self, what: str, reason: str):
        super().__init__(
            f"Cannot fetch {what}: {reason}. Models you already downloaded "
            "still work offline (`kit list`). To download, connect to the "
            "internet (and unset HF_HUB_OFFLINE), point HF_ENDPOINT at a room "
            "mirror, or install an offline pack (`kit pack install DIR`)."
        )


class HubAccessDenied(KitError):
    """A gated or private repository (HTTP 401/403); the token is never shown."""

    def __init__(self, repo_id: str, status: int, has_token: bool):
        if has_token:
            why = (f"your access token does not give access to {repo_id} "
                   f"(HTTP {status})")
        else:
            why = (f"{repo_id} is gated or private and no access token was "
                   f"sent (HTTP {status})")
        super().__init__(
            f"{why}. Open https://huggingface.co/{repo_id} in a browser, log "
            "in and accept the licence; then create a read token in your "
            "account settings and run `hf auth login` (or set HF_TOKEN), and "
            "try again. Or choose a model that is not gated (`kit search`)."
        )
        self.repo_id, self.status = repo_id, status


class HubNotFound(KitError):
    """HTTP 404: no such repository, revision or file."""

    def __init__(self, what: str, hint: str = ""):
        super().__init__(
            f"Not found on the Hub: {what}. "
            + (hint or "Check the spelling, or find models with `kit search TEXT`.")
        )


class ChecksumMismatch(KitError):
    def __init__(self, what: str, got: str, expected: str):
        super().__init__(
            f"The download of {what} is damaged: its sha256 is {got[:12]}..., "
            f"the Hub says {expected[:12]}.... Nothing was kept; run the same "
            "command again to download it afresh."
        )


class NotEnoughDisk(KitError):
    def __init__(self, what: str, needed: int, free: int, where):
        super().__init__(
            f"Not enough disk space for {what}: it needs {needed / 1e9:.2f} GB "
            f"more but only {free / 1e9:.2f} GB is free in {where}. Free some "
            "space (`kit rm NAME` removes a model), or set HF_HOME (downloads) "
            "or KIT_HOME (the kit's own models) to a folder on a bigger drive."
        )


class DiskFull(KitError):
    """A write failed for want of space (ENOSPC, a quota, a size limit)."""

    def __init__(self, path, exc: OSError):
        super().__init__(
            f"The disk is full: could not write {path} ({exc.strerror or exc}). "
            "Nothing was changed. Free some space (`kit rm NAME` removes a "
            "model; empty the Trash), then run the same command again."
        )
        self.path = path


class DownloadFailed(KitError):
    def __init__(self, what: str, reason: str):
        super().__init__(
            f"The download of {what} stopped: {reason}. What arrived is kept: "
            "run the same command again and it continues where it stopped."
        )


class NotPulledYet(ModelNotFound):
    """A catalog model that is not downloaded yet."""

    def __init__(self, name: str, size: int | None = None):
        KitError.__init__(
            self,
            f"{name!r} is not downloaded yet. Run "
            f"`kit pull {name}`"
            + (f" ({size / 1e9:.2f} GB)" if size else "")
            + " first, or choose an installed model (`kit list`)."
        )
        self.name = name


# ---- offline workshop packs (kit.pack) ---------------------------------------

class PackError(KitError):
    """A pack that cannot be built, read, served or installed; says why."""


class PackInstallFailed(PackError):
    """Some models of a pack could not be installed; the others were."""

    def __init__(self, failures: dict[str, str], installed: list[str]):
        lines = "; ".join(f"{name}: {why}" for name, why in failures.items())
        ok = ", ".join(installed) or "none"
        super().__init__(
            f"Could not install {len(failures)} model(s) from the pack: {lines} "
            f"Installed fine: {ok}. Run the same `kit pack install` again to "
            "retry (downloads resume); if a checksum is still wrong, ask the "
            "instructor to rebuild the pack (`kit pack build DIR --force`)."
        )
        self.failures, self.installed = failures, installed


class NoGpuSupport(KitError):
    """A GPU option was asked of a llama-cpp-python built for the CPU only."""

    def __init__(self, asked: str = "n_gpu_layers", fallback_hint: bool = True):
        super().__init__(
            f"{asked} asks for the GPU, but this llama-cpp-python was built "
            "without GPU support, so nothing would move to a GPU. Use 0 GPU "
            "layers (CPU), or rebuild it with CUDA: CMAKE_ARGS=\"-DGGML_CUDA=on\" "
            "pip install --force-reinstall --no-cache-dir llama-cpp-python "
            "(Apple: -DGGML_METAL=on; README: GPU)."
            + (" To run on the CPU anyway, pass gpu_fallback=True." if fallback_hint
               else "")
        )
        self.asked = asked


class UnknownModelName(ModelNotFound):
    """`kit pull NAME` for a name that is neither in the catalog nor on the Hub."""

    def __init__(self, name: str, similar: list[str] | None = None):
        near = f" Similar catalog names: {', '.join(similar)}." if similar else ""
        KitError.__init__(
            self,
            f"{name!r} is not a catalog name.{near} See the catalog with "
            "`kit search TEXT` (it works offline too), or name a Hub "
            "repository like this: `kit pull hf.co/OWNER/REPO:Q4_K_M`."
        )
        self.name = name


# ---- quantizing and measuring quality (kit.quantize, kit.evaluate) -----------

class UnknownQuantType(KitError):
    def __init__(self, name: str, valid):
        super().__init__(
            f"Unknown quantization type {name!r}. Valid types: "
            f"{', '.join(valid)}. Example: `kit quantize smollm2:135m "
            "--types q8_0,q4_k_m`."
        )
        self.name = name


class OutputExists(KitError):
    def __init__(self, path, name: str):
        super().__init__(
            f"{name} already exists ({path}). Pass force=True (CLI: --force) "
            f"to make it again, or remove it first (`kit rm {name}`)."
        )
        self.path, self.name = path, name


class QuantizeFailed(KitError):
    def __init__(self, what: str, reason: str):
        super().__init__(
            f"Quantizing {what} failed: {reason}. Nothing was kept or "
            "registered. Check that the input is a complete model file "
            "(`kit info MODEL`) and that the disk has room, then try again."
        )


class EvalTextTooShort(KitError):
    def __init__(self, n_tokens: int, n_ctx: int):
        super().__init__(
            f"The evaluation text is {n_tokens} tokens long, shorter than one "
            f"window of {n_ctx} tokens. Use a longer text"
            + (f", or a smaller window (n_ctx, CLI: --ctx), e.g. n_ctx="
               f"{_smaller_ctx(n_tokens)}." if n_tokens >= 32 else ".")
        )
        self.n_tokens, self.n_ctx = n_tokens, n_ctx


def _smaller_ctx(n_tokens: int) -> int:
    n = 16  # the largest power of two that fits in the text
    while n * 2 <= n_tokens:
        n *= 2
    return n


class EngineCannotRun(KitError):
    """The chosen engine cannot run this model file; said before loading."""

    def __init__(self, reason: str):
        super().__init__(reason + ".")
        self.reason = reason


class NoCtransformersGpu(KitError):
    def __init__(self):
        super().__init__(
            "gpu_layers asks ctransformers for the GPU, but its CUDA libraries "
            "are not installed or there is no NVIDIA GPU, so nothing would move "
            "to a GPU. Use 0 GPU layers, or on a machine with an NVIDIA GPU run "
            "`pip install ctransformers[cuda]`."
        )


class BadPromptSet(KitError):
    def __init__(self, source, problem: str):
        super().__init__(
            f"Cannot use the prompts in {source}: {problem}. Built-in sets: "
            "`roles`, `quick`; your own file may be .json (a list of prompts, "
            "each text or {\"id\": ..., \"prompt\": ...}), .yaml or .txt (prompts "
            "separated by blank lines)."
        )
        self.source = source


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


# ---- search and answer over documents (kit.documents) ------------------------

class NoDocuments(KitError):
    def __init__(self, folder, why: str, skipped=()):
        listed = "".join(f"\n  - {s}" for s in skipped)
        super().__init__(
            f"No documents to index in {folder}: {why}. Choose a folder that "
            "holds .txt, .md, .pdf, .html or .docx files"
            + (f". Skipped:{listed}" if listed else ".")
        )
        self.folder = folder
        self.skipped = list(skipped)


class Unreadable(Exception):
    """A document a reader cannot read (kit.documents); the message is the
    reason shown to the learner beside the file's name, and the others are read."""


# ---- tool calling (kit.tools) ------------------------------------------------

class BadTool(KitError):
    """A tool the kit cannot offer to a model (schema, hints, name)."""

    def __init__(self, name: str, problem: str):
        super().__init__(
            f"The tool {name!r} cannot be offered: {problem}. A tool is a Python "
            "function with type hints on every argument and a docstring, or an "
            "OpenAI-style schema {\"type\": \"function\", \"function\": {\"name\": "
            "..., \"description\": ..., \"parameters\": {JSON schema}}}."
        )
        self.name, self.problem = name, problem


class ToolsUnsupported(KitError):
    def __init__(self, where: str, why: str):
        super().__init__(
            f"{where} cannot call tools: {why}. Load the model with the llama.cpp "
            "engine (kit.load(name)), or use a server with tool support "
            "(`kit serve`, Ollama, llama.cpp's server with --jinja)."
        )


class UnknownTool(KitError):
    def __init__(self, name: str, offered: list[str]):
        super().__init__(
            f"No tool named {name!r} was offered (offered: "
            f"{', '.join(offered) or 'none'}). Name one of the offered tools, or "
            "add the tool to the list."
        )
        self.name = name


class NoToolCall(KitError):
    def __init__(self, text: str, problems: list[str] = ()):
        why = f" ({'; '.join(problems)})" if problems else ""
        super().__init__(
            f"A tool call was required, but the model answered with text{why}: "
            f"{text[:120]!r}. Keep the grammar on (constrain=True), raise "
            "max_tokens, or use tool_choice=\"auto\" to let it answer in words."
        )
        self.text, self.problems = text, list(problems)


class ToolFailed(KitError):
    """A tool raised or did not finish in time (the loop tells the model)."""

    def __init__(self, name: str, problem: str):
        super().__init__(
            f"The tool {name!r} failed: {problem}. The model is shown this "
            "message and may try again; fix the tool or raise its timeout."
        )
        self.name, self.problem = name, problem


# ---- fine-tuning (kit.finetune) ----------------------------------------------

class TrainingUnavailable(KitError):
    def __init__(self, problem: str, verified=()):
        super().__init__(
            f"Training through llama.cpp is switched off: {problem}. The kit "
            "declares llama.cpp's training structures itself, and a wrong layout "
            "would crash the kernel. Install a checked version (pip install "
            f"llama-cpp-python=={verified[-1] if verified else '0.3.36'}) or "
            "update kit/engines/llama_train.py from that version's llama.h."
        )
        self.problem = problem


class NotTextData(KitError):
    def __init__(self, path, why: str):
        super().__init__(
            f"{path} cannot be training data: {why}. Give a plain-text file "
            "(.txt or .md, UTF-8), or question/answer pairs as .jsonl (one "
            "{\"question\": ..., \"answer\": ...} per line) or .json (a list of them)."
        )
        self.path = path


class TrainingDataTooShort(KitError):
    def __init__(self, n_tokens: int, needed: int, n_ctx: int):
        super().__init__(
            f"The training data is {n_tokens} tokens long, but context {n_ctx} "
            f"needs at least {needed} (windows to learn from plus one held out "
            "to measure the loss). Add more text, or use a smaller context "
            "(n_ctx=128 or 256, CLI: --ctx)."
        )
        self.n_tokens, self.needed = n_tokens, needed


class TrainingTooLong(KitError):
    def __init__(self, estimate: str, limit_minutes: float):
        super().__init__(
            f"Training would take {estimate}, more than the {limit_minutes:g} "
            "minutes allowed. Shorten the data, train fewer epochs or a smaller "
            "context, or allow it: max_minutes=None (CLI: answer yes, or --yes)."
        )


class TrainingWontFit(KitError):
    def __init__(self, explanation: str):
        super().__init__(
            f"Training this model will not fit in memory: {explanation}. Training "
            "holds each weight four times in 32-bit floats (the weight, its "
            "gradient and AdamW's two moments). Choose a smaller model, close "
            "other programs, or train on a machine with more memory (LoRA "
            "adapters need far less: notebook 10)."
        )


class UnsupportedArchitecture(KitError):
    def __init__(self, arch, supported):
        super().__init__(
            f"The training path does not support the {arch or 'unknown'} "
            f"architecture; it is tried on: {', '.join(supported)}. Choose such a "
            "model (the starter smollm2:135m is llama), or use retrieval "
            "(notebook 08) to give this model your facts."
        )
        self.arch = arch


class TrainingInProgress(KitError):
    def __init__(self, name: str, pid: int, lock):
        super().__init__(
            f"{name} is already being trained (process {pid}, lock {lock}). "
            "Wait for it to finish, stop it, or choose another label "
            "(label=..., CLI: --label)."
        )
        self.name, self.pid = name, pid


class NoFillInMiddle(KitError):
    def __init__(self, model: str, problem: str):
        super().__init__(
            f"The model {model!r} cannot fill in the middle: {problem}. Use a code "
            "model trained for it, such as qwen2.5-coder:1.5b, with the llama.cpp "
            "engine, or send the prompt without a suffix."
        )


# ---- embeddings (kit.engines.embed) ------------------------------------------

class NotAnEmbeddingModel(KitError):
    def __init__(self, name: str):
        super().__init__(
            f"{name} is a chat model: it writes text, it does not make embeddings. "
            "Load an embedding model for that: kit.load(\"all-minilm:l6-v2\") "
            "(install it once with `kit pull all-minilm:l6-v2`)."
        )
        self.name = name


class NotAChatModel(KitError):
    def __init__(self, name: str):
        super().__init__(
            f"{name} is an embedding model: it turns text into numbers "
            "(model.embed(texts), `kit embed`), it cannot chat or write. Load a "
            "chat model for that, such as smollm2:135m or qwen2.5-coder:1.5b."
        )
        self.name = name


class TextTooLongToEmbed(KitError):
    def __init__(self, index: int, n_tokens: int, limit: int, name: str):
        super().__init__(
            f"Text #{index} is {n_tokens} tokens long; {name} reads at most "
            f"{limit}. Split it into smaller chunks, or pass truncate=True to "
            "embed only its beginning (the kit then says which texts were cut)."
        )
        self.index, self.n_tokens, self.limit = index, n_tokens, limit


class EmbeddingTruncated(UserWarning):
    """Some texts were cut to the embedding model's context (a warning)."""


class BadTopCount(KitError):
    template = ("k must be a whole number from 1 to {n_vocab} (this model's "
                "vocabulary); got {k!r}. Try k=10 to see the ten likeliest tokens.")


class NoProbabilities(KitError):
    template = ("The {engine} engine does not report token probabilities. Load the "
                "model with the llama.cpp engine (kit.load(name), the default); a "
                "kit server (`kit serve`) returns them as logprobs too.")
