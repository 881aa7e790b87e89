"""kit.errors: every error class lives there (the kit/errors/ files), and each message can be made."""
import ast
import inspect
import pickle
import string
from pathlib import Path

import pytest

from kit import errors

KIT = Path(__file__).resolve().parents[1] / "kit"


def _is_error(node: ast.ClassDef) -> bool:
    names = [ast.unparse(b) for b in node.bases]
    return any(n.endswith(("Error", "Exception", "Warning")) or n.startswith("errors.")
               or n in ERROR_NAMES for n in names)


ERROR_NAMES = {name for name, obj in vars(errors).items()
               if inspect.isclass(obj) and issubclass(obj, BaseException)}


def test_every_error_class_is_defined_in_kit_errors():
    elsewhere = []
    for path in KIT.rglob("*.py"):
        if path.parent == KIT / "errors":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            # a private class (_Expired) is a signal inside one module that
            # never reaches a caller: not an error of the kit's
            if isinstance(node, ast.ClassDef) and _is_error(node) \
                    and not node.name.startswith("_"):
                elsewhere.append(f"{path.relative_to(KIT.parent)}: {node.name}")
    assert not elsewhere, f"error classes outside kit/errors/: {elsewhere}"


TEMPLATED = sorted((c for c in vars(errors).values() if inspect.isclass(c)
                    and issubclass(c, errors.KitError) and c.template),
                   key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", TEMPLATED, ids=lambda c: c.__name__)
def test_templated_messages_fill_in_and_survive_pickling(cls):
    specs = {f: spec for _, f, spec, _ in string.Formatter().parse(cls.template) if f}
    # a number where the template formats one ({seconds:g}, {size:,}), else a word
    values = {f: 7 if spec else f"<{f}>" for f, spec in specs.items()}
    err = cls(**values)
    text = str(err)
    assert text and "{" not in text
    if not cls.template.endswith("}"):  # a sentence, unless a field ends it
        assert text.rstrip().endswith((".", ")"))
    for f, v in values.items():
        assert getattr(err, f) == v and str(v) in text
    assert str(pickle.loads(pickle.dumps(err))) == text


def test_a_plain_message_still_works():
    assert str(errors.KitError("just this")) == "just this"
    assert str(errors.NothingToEvaluate()).startswith("No models to evaluate")


def test_the_package_gathers_every_class_its_files_define():
    """kit.errors names every class of kit/errors/*.py: one import finds them all."""
    files = [p for p in (KIT / "errors").glob("*.py") if p.name != "__init__.py"]
    defined = {n.name for p in files for n in ast.parse(p.read_text()).body
               if isinstance(n, ast.ClassDef)}
    assert defined and defined <= set(vars(errors))
