"""One answer loop for both APIs: wait for the model, then collect the answer
(`"stream": false`) or pass its pieces on as they come, and stop the model
when the client leaves. Each API only shapes what it sends. Notebook 07.

>>> answer = await begin(request, pool, name, lambda m: m.chat(messages))
>>> text, stats = await answer.collect()            # one JSON answer
>>> async for kind, value in answer.events(): ...   # streamed, piece by piece
"""
from __future__ import annotations

import time

from kit.errors import ClientGone
from kit.server.models import until_disconnect

# The kit's stop reasons as both APIs name them (finish_reason, done_reason).
FINISH = {"eos": "stop", "stop": "stop", "cancelled": "stop", "length": "length",
          "context": "length"}


CHECK_EVERY = 0.2  # seconds between looks at whether a client is still there


def finish_reason(stats) -> str:
    return FINISH.get(stats.stop_reason, "stop")


class Answer:
    """A generation that has begun: its first event has arrived."""

    def __init__(self, request, job, first):
        self.request, self.job, self.first = request, job, first

    @property
    def load_s(self) -> float:
        """Seconds spent loading the model for this request (0 if it was loaded)."""
        return self.job.load_s

    def cancel(self) -> None:
        """Stop the model (nothing happens if it has finished)."""
        self.job.cancel()

    async def collect(self):
        """(the whole text, its stats); ClientGone (and the model stops) if the
        client leaves first."""
        pieces, event, checked = [], self.first, time.monotonic()
        try:
            while event[0] == "piece":
                pieces.append(event[1])
                # Pieces may come faster than until_disconnect looks: look here too.
                if time.monotonic() - checked > CHECK_EVERY:
                    checked = time.monotonic()
                    if self.request is not None and await self.request.is_disconnected():
                        raise ClientGone()
                event = await until_disconnect(self.request, self.job.next(),
                                               every=CHECK_EVERY)
        except ClientGone:
            self.cancel()
            raise
        if event[0] == "error":
            raise event[1]
        return "".join(pieces), event[1]

    async def events(self):
        """("piece", text) ..., then ("end", stats) or ("error", exception).

        For streamed answers: the response stops reading when the client
        leaves, and leaving this loop early stops the model.
        """
        event = self.first
        try:
            while event[0] == "piece":
                yield event
                event = await self.job.next()
            yield event
        finally:
            self.cancel()  # the client left early, or the answer is over


async def begin(request, pool, name: str, make_stream, n_ctx: int | None = None) -> Answer:
    """Wait for the model (in turn) and for the first piece of its answer.

    An error before any text (a bad prompt, a schema) is raised here, so the
    client gets a plain HTTP error rather than a broken stream.
    """
    job = await pool.start(request, name, make_stream, n_ctx=n_ctx)
    try:
        first = await until_disconnect(request, job.next())
    except BaseException:
        job.cancel()
        raise
    if first[0] == "error":
        raise first[1]
    return Answer(request, job, first)
