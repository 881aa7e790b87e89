"""The base class KitError and the errors every stage can meet (notebooks 00-01)."""
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
