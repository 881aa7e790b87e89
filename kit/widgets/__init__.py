"""Widgets for notebooks and Voila dashboards: thin shells over plain functions.

>>> from kit.widgets import ChatWidget
>>> ChatWidget()          # displays a chat box with the starter model

Importing this package loads nothing: each widget imports ipywidgets (and
the model) only when it is created.
"""
from __future__ import annotations

__all__ = ["ChatWidget", "ArenaWidget", "FitWidget", "BenchPanel", "DocumentsWidget",
           "markdown_html", "TokenExplorer"]

_WHERE = {"ChatWidget": "chat", "markdown_html": "chat", "ArenaWidget": "arena",
          "FitWidget": "fit", "BenchPanel": "bench", "DocumentsWidget": "documents",
          "TokenExplorer": "tokens"}


def __getattr__(name):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"kit.widgets.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'kit.widgets' has no attribute {name!r}")
