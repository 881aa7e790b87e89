"""A model made with Ollama's /api/create: its own system prompt, opening
messages and default options, applied by every route that answers (notebook 07).

`ollama.create(model="librarian", from_="smollm2:135m", system="...",
parameters={"temperature": 0.2})` records a new name in the kit's registry
beside the same model file (kit.server.manage_api); a request to "librarian"
then gets that system prompt unless it sends its own, and those options
unless it sets them itself.

>>> p = preset("librarian")
>>> p.messages([{"role": "user", "content": "Hello"}])[0]["role"]
'system'
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from kit.errors import BadRequest

log = logging.getLogger("kit.server")

# Ollama's parameter names the kit honours, and the kind of value each takes
KNOWN = {"temperature": float, "top_p": float, "top_k": int, "min_p": float,
         "repeat_penalty": float, "seed": int, "num_predict": int, "num_ctx": int,
         "stop": list}
# ... and the kit's own sampling names (model.chat's keywords) for them
SAMPLING = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
            "min_p": "min_p", "repeat_penalty": "repeat_penalty", "seed": "seed",
            "num_predict": "max_tokens", "stop": "stop"}
ROLES = ("system", "user", "assistant")


def check_parameters(parameters) -> dict:
    """Ollama-style parameters, checked: a clear 400 for a name or value the
    kit does not honour (never silently ignored)."""
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise BadRequest("parameters is an object such as {\"temperature\": 0.2}.")
    out = {}
    for name, value in parameters.items():
        kind = KNOWN.get(name)
        if kind is None:
            raise BadRequest(f"The parameter {name!r} is not one the kit honours; use "
                             f"{', '.join(KNOWN)}, or leave it out.")
        if kind is list:
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise BadRequest("The parameter 'stop' is a string or a list of strings.")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (kind is int and float(value) != int(value)):
            raise BadRequest(f"The parameter {name!r} is a "
                             f"{'whole number' if kind is int else 'number'}, not "
                             f"{value!r}.")
        else:
            value = kind(value)
        if name == "num_ctx" and value < 16:
            raise BadRequest("The parameter 'num_ctx' is at least 16 (tokens).")
        out[name] = value
    return out


def check_messages(messages) -> list[dict]:
    """Opening messages for a created model: role and text only."""
    out = []
    for m in messages or []:
        if not isinstance(m, dict) or m.get("role") not in ROLES or \
                not isinstance(m.get("content"), str):
            raise BadRequest("Each message of a created model has a role (system, "
                             "user or assistant) and text content.")
        out.append({"role": m["role"], "content": m["content"]})
    return out


@dataclass(frozen=True)
class Preset:
    """What /api/create recorded for a name (empty for other models)."""

    system: str | None = None
    options: dict = field(default_factory=dict)  # Ollama's names (KNOWN)
    opening: tuple = ()  # messages before the conversation

    def messages(self, messages: list[dict]) -> list[dict]:
        """The conversation with the preset's system prompt (unless the request
        has one) and its opening messages put first."""
        has_system = any(m.get("role") == "system" for m in messages)
        head = [] if has_system or not self.system else \
            [{"role": "system", "content": self.system}]
        lead = [m for m in messages[:1] if m.get("role") == "system"]
        return lead + head + [dict(m) for m in self.opening] + messages[len(lead):]

    def sampling(self, sampling: dict, sent) -> dict:
        """The kit's sampling keywords, with the preset's values where the
        request did not set one (`sent`: the kit names it set)."""
        out = dict(sampling)
        for name, value in self.options.items():
            kit_name = SAMPLING.get(name)
            if kit_name and kit_name not in sent:
                out[kit_name] = tuple(value) if kit_name == "stop" else value
        return out

    def ollama_options(self, options: dict) -> dict:
        """Ollama's options for a request: the preset's, then the request's own."""
        return {**self.options, **options}


def preset(name: str) -> Preset:
    """The preset recorded for `name` in the registry (empty if none)."""
    from kit.errors import RegistryDamaged
    from kit.models.registry import installed

    try:
        entry = installed().get(name) or {}
    except RegistryDamaged:  # `kit doctor` says so; answers go on without presets
        log.warning("The model list is damaged: answering %s without its preset", name)
        entry = {}
    return Preset(entry.get("system"), dict(entry.get("parameters") or {}),
                  tuple(entry.get("messages") or ()))


def modelfile_lines(name: str) -> list[str]:
    """SYSTEM, PARAMETER and MESSAGE lines for /api/show, as Ollama writes them."""
    p = preset(name)
    lines = [f'SYSTEM """{p.system}"""'] if p.system else []
    for key, value in p.options.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append(f"PARAMETER {key} {v}")
    lines += [f'MESSAGE {m["role"]} """{m["content"]}"""' for m in p.opening]
    return lines
