"""kit: run open language models on your own computer, and see how it works.

Importing kit does nothing but define names; the work starts when you call.
The machine check is the stage module kit.doctor (kit.doctor.run_checks()),
so no call here shares its name.

>>> import kit
>>> model = kit.load()                      # the starter model, smollm2:135m
>>> for piece in model.generate("The capital of France is"):
...     print(piece, end="")
"""
from __future__ import annotations

__version__ = "0.1.0"


def load(name=None, **options):
    """Load a model by kit name or .gguf path; see kit.engines.load."""
    from kit.engines import load as _load

    return _load(name, **options)


def info(name=None):
    """Facts about a model file, read without loading weights."""
    from kit.modelfile import read_facts
    from kit.models.registry import resolve

    return read_facts(resolve(name).path)
