"""A conversation: system prompt, turns, and trimming when the context fills.

>>> conv = Conversation(system="Answer in one sentence.")
>>> conv.add("user", "What is a token?")
>>> answer = model.chat(conv.fit(model)).text
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kit.errors import PromptTooLong

ROLES = ("system", "user", "assistant")


@dataclass
class Conversation:
    system: str = ""
    turns: list[dict] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def add(self, role: str, content: str) -> None:
        if role not in ROLES[1:]:
            raise ValueError(f"role must be 'user' or 'assistant', not {role!r}")
        self.turns.append({"role": role, "content": content})

    def clear(self) -> None:
        self.turns.clear()

    @property
    def messages(self) -> list[dict]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + list(self.turns)

    def fit(self, model, reserve: int = 256) -> list[dict]:
        """Messages that fit the model's context with `reserve` tokens to answer.

        The oldest turns are dropped first, and each drop is recorded in
        `notices`, so it never happens silently.
        """
        budget = model.n_ctx - reserve
        while True:
            used = len(model.tokenize(model.format_chat(self.messages)))
            if used <= budget or len(self.turns) <= 1:
                break
            dropped = self.turns.pop(0)
            self.notices.append(
                f"Dropped the oldest {dropped['role']} turn to stay within the "
                f"context window ({used} of {model.n_ctx} tokens were in use).")
        if used > model.n_ctx - 1:
            raise PromptTooLong(used, model.n_ctx)
        return self.messages
