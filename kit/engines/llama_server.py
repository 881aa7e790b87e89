"""Start llama-cpp-python's own OpenAI-compatible server on this computer.

For lessons and tests of the remote engine without Ollama or LM Studio: it
listens on 127.0.0.1 only, and stops when the `with` block ends.

>>> with LlamaServer("smollm2:135m") as server:
...     model = RemoteEngine(base_url=server.url)
"""
from __future__ import annotations

import subprocess
import sys

from kit.errors import EngineMissing, KitError
from kit.util import free_port, start_and_wait, stop_process

EXTRAS = ("fastapi", "uvicorn", "sse_starlette", "starlette_context",
          "pydantic_settings")
__all__ = ["LlamaServer", "free_port"]


class LlamaServer:
    """`python -m llama_cpp.server` for one model, as a child process."""

    def __init__(self, model: str | None = None, port: int | None = None,
                 host: str = "127.0.0.1", n_ctx: int = 2048, n_threads: int | None = None,
                 alias: str | None = None, start_timeout: float = 90.0):
        import importlib.util

        from kit.modelfile import read_facts
        from kit.settings import get_settings
        from kit.models.registry import resolve

        missing = [m for m in EXTRAS if importlib.util.find_spec(m) is None]
        if missing:
            raise EngineMissing("llama-cpp-python[server]",
                                f"the server also needs {', '.join(missing)}")
        ref = resolve(model)
        read_facts(ref.path)  # a damaged file fails here, not in the server
        self.name = alias or ref.name
        self.host, self.port = host, port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        threads = n_threads or get_settings().n_threads
        self.cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(ref.path),
                    "--model_alias", self.name, "--host", host, "--port", str(self.port),
                    "--n_ctx", str(n_ctx), "--n_threads", str(threads),
                    "--n_threads_batch", str(threads),
                    # its default cuts off the answer running when another request
                    # comes in: a room's second learner would empty the first's
                    "--interrupt_requests", "False"]
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None

    def start(self) -> "LlamaServer":
        import tempfile

        # A file, not a pipe: uvicorn logs every request, and a full pipe
        # would block the server.
        self._log = tempfile.TemporaryFile(mode="w+")
        self.proc, state = start_and_wait(self.cmd, self.url + "/v1/models",
                                          self.start_timeout, stdout=subprocess.DEVNULL,
                                          stderr=self._log, text=True)
        if state == "exited":
            self._log.seek(0)
            err = self._log.read().strip().splitlines()[-3:]
            raise KitError(f"The llama.cpp server stopped at start: {err}. "
                           "Check the model file and that the port is free.")
        if state == "timeout":
            self.stop()
            raise KitError(f"The llama.cpp server did not answer within "
                           f"{self.start_timeout:g} s; the machine may be busy: try again.")
        return self

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)
        if getattr(self, "_log", None):
            self._log.close()

    def __enter__(self) -> "LlamaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.proc and self.proc.poll() is None else "stopped"
        return f"<LlamaServer {self.name} at {self.url}, {state}>"
