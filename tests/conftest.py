import os

import pytest

from kit.models.registry import resolve


@pytest.fixture(scope="session")
def starter_path():
    """The real starter model, installed by the root conftest."""
    return resolve("smollm2:135m").path


@pytest.fixture(scope="session")
def qwen_model_path():
    """qwen2.5-coder:1.5b (1.1 GB), joined once per machine by the root conftest."""
    return resolve("qwen2.5-coder:1.5b").path


@pytest.fixture(scope="session")
def embedding_model_path():
    """all-minilm:l6-v2 converted to GGUF, once per machine by the root conftest."""
    return resolve("all-minilm:l6-v2").path


@pytest.fixture
def kit_home(tmp_path, monkeypatch):
    """An empty KIT_HOME for tests that change the store."""
    home = tmp_path / "kit-home"
    monkeypatch.setenv("KIT_HOME", str(home))
    return home


# A real headless Chromium for the browser tests (Debian's, driven by
# Playwright for Python; never `playwright install`).
CHROMIUM = os.environ.get("KIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    from pathlib import Path

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser at {CHROMIUM}: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="pip install playwright (the test extra)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
