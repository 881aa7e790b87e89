import pytest

from kit.models.registry import resolve


@pytest.fixture(scope="session")
def starter_path():
    """The real starter model, installed by the root conftest."""
    return resolve("smollm2:135m").path


@pytest.fixture
def kit_home(tmp_path, monkeypatch):
    """An empty KIT_HOME for tests that change the store."""
    home = tmp_path / "kit-home"
    monkeypatch.setenv("KIT_HOME", str(home))
    return home
