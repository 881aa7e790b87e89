"""Every error the kit raises on purpose: what went wrong, then the next step.

>>> raise ModelNotFound("llama9:1t", installed=["smollm2:135m"])
Traceback (most recent call last):
...
kit.errors.ModelNotFound: No model named 'llama9:1t'. Installed: smollm2:135m. ...
"""
from __future__ import annotations


class KitError(Exception):
    """Base class: the message already says what to do next."""

    exit_code = 1


class ModelNotFound(KitError):
    def __init__(self, name: str, installed: list[str] | None = None):
        names = ", ".join(installed or []) or "none yet"
        super().__init__(
            f"No model named {name!r}. Installed: {names}. "
            "Run `kit list` to see them, `kit setup` to install the starter "
            "model, or pass the path to a .gguf file."
        )
        self.name = name


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


class BadParameter(KitError):
    def __init__(self, name: str, value, allowed: str):
        super().__init__(
            f"{name}={value!r} is out of range: {name} must be {allowed}."
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


class SetupFailed(KitError):
    pass
