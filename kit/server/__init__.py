"""Your own local API: an OpenAI- and Ollama-compatible server for kit models.

Code written for OpenAI's or Ollama's Python clients runs unchanged against it.
Nothing starts on import.

>>> server = start()                       # background, free port, 127.0.0.1
kit server running at http://127.0.0.1:40123 (models: smollm2:135m); ...
>>> from openai import OpenAI
>>> client = OpenAI(base_url=server.openai_url, api_key="unused")
>>> server.stop()

`kit serve` runs the same server in the foreground (see kit.server.launch).
Modules: models (loading, memory budget, queue), app (errors, API key),
openai_api, responses_api (OpenAI's Responses API), ollama_api, manage_api
(Ollama's pull, create, copy, delete; presets: what create records),
launch (serve, start).
"""
from __future__ import annotations


def start(models=None, **options):
    """Start a server in the background; see kit.server.launch.start."""
    from kit.server.launch import start as _start

    return _start(models, **options)


def serve(models=None, **options):
    """Serve in the foreground until Ctrl-C; see kit.server.launch.serve."""
    from kit.server.launch import serve as _serve

    return _serve(models, **options)


def create_app(models=None, api_key=None, **pool_options):
    """The FastAPI app itself (to mount elsewhere or test in-process)."""
    from kit.server.app import create_app as _create
    from kit.server.models import ModelPool

    return _create(ModelPool(models, **pool_options), api_key=api_key)
