"""Errors of putting a model to work: documents, tools, fine-tuning, embeddings, probabilities (08-10)."""
from __future__ import annotations

from kit.errors.base import KitError


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


class TooMuchToEmbed(KitError):
    """More tokens in one embedding call than its limit allows (HTTP 400 on a server)."""

    def __init__(self, n_texts: int, limit: int, index: int):
        super().__init__(
            f"These {n_texts} texts hold more than {limit:,} tokens (the limit "
            f"for one request, passed at text #{index}). Send fewer or shorter "
            "texts per request (for example 64 at a time, as the kit's remote "
            "engine does)."
        )
        self.n_texts, self.limit, self.index = n_texts, limit, index


class EmbeddingTruncated(UserWarning):
    """Some texts were cut to the embedding model's context (a warning)."""


class BadTopCount(KitError):
    template = ("k must be a whole number from 1 to {n_vocab} (this model's "
                "vocabulary); got {k!r}. Try k=10 to see the ten likeliest tokens.")


class NoProbabilities(KitError):
    template = ("The {engine} engine does not report token probabilities. Load the "
                "model with the llama.cpp engine (kit.load(name), the default); a "
                "kit server (`kit serve`) returns them as logprobs too.")
