"""kit: run open language models on your own computer, and see how it works.

Importing kit does nothing but define names; the work starts when you call.
Each public call below lives in its stage's module and is imported the first
time you use it (the table _PUBLIC says where), so `import kit` stays fast.
The machine check is the stage module kit.doctor (kit.doctor.run_checks()),
so no call here shares its name.

>>> import kit
>>> model = kit.load()                      # the starter model, smollm2:135m
>>> for piece in model.generate("The capital of France is"):
...     print(piece, end="")
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> (module, attribute): one lazy table, read top to bottom in
# the order of the notebooks
_PUBLIC = {
    "check_machine": ("kit.doctor", "run_checks"),         # 00
    "setup": ("kit.models.starter", "install_starter"),    # 00
    "load": ("kit.engines", "load"),                       # 01
    "info": ("kit.models.registry", "info"),               # 01
    "list_models": ("kit.models.registry", "list_models"),  # 02
    "pull": ("kit.models.pull", "pull"),                   # 02
    "import_file": ("kit.models.pull", "import_file"),     # 02
    "remove": ("kit.models.pull", "remove"),               # 02
    "serve": ("kit.server", "start"),                      # 07
    "index_folder": ("kit.documents", "index_folder"),     # 08
    "answer": ("kit.documents", "answer"),                 # 08
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    try:
        module, attribute = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'kit' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # looked up once; later uses are plain attributes
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
