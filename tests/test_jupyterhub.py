"""kit.room.hub, hub_config, hub_check and `kit hub`: a real JupyterHub on 127.0.0.1.

One room for the module: JupyterHub from PyPI, configurable-http-proxy from
npm (cached in ~/.cache/kit/hub), SimpleLocalProcessSpawner, one `kit serve`
with a key per learner. Ten learners log in through the login form at once,
start their servers and kernels, and run notebook 01's core cells over the
kernel websocket (about 1.5 minutes on 2 busy cores). Every process is stopped
at the end, also when a test fails. Skipped without node and npm (.ci/run
installs them).
"""
import os
import shutil
import stat
import subprocess
import sys

import httpx
import psutil
import pytest

from kit.errors import BadParameter, HubNotRunning, HubStartFailed, HubUnsafe, NpmMissing
from kit.room import hub_config
from kit.room.hub_users import account_name, can_make_accounts, make_accounts, remove_accounts
from kit.room.hub import open_room, room_processes, start_room
from kit.room.hub_check import (CORE_CELLS, _login, check_room, core_cells,
                                format_report, run_learner)

USERS = 10  # as the benchmark (benchmarks/jupyterhub.py): 10 learners at once
NAMES = [f"learner-{i}" for i in range(1, USERS + 1)]

needs_npm = pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")),
                               reason="node and npm are needed for JupyterHub's proxy "
                               "(sudo apt-get install nodejs npm)")


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    pytest.importorskip("jupyterhub")
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are needed for JupyterHub's proxy "
                    "(sudo apt-get install nodejs npm)")
    folder = tmp_path_factory.mktemp("room")
    with _learners_can_run_this_python():
        try:
            with start_room(NAMES, room=folder, port=0, quiet=True) as running:
                yield running
        finally:
            remove_accounts(folder, homes=True)  # the system users it made (as root)


class _learners_can_run_this_python:
    """The learners' accounts must run the kit's Python. Here it lives under
    /root (pyenv), closed to other users: for the tests only, let them pass
    through (o+x: no listing, no reading), and close it again afterwards."""

    def __enter__(self):
        from kit.room.hub_users import closed_to_learners, kit_paths

        self.opened = []
        while can_make_accounts() is None and (folder := closed_to_learners(kit_paths())):
            mode = folder.stat().st_mode
            if mode & stat.S_IXOTH:
                break  # a file others cannot read: not ours to change
            self.opened.append((folder, stat.S_IMODE(mode)))
            os.chmod(folder, stat.S_IMODE(mode) | stat.S_IXOTH)
        return self

    def __exit__(self, *exc):
        for folder, mode in reversed(self.opened):
            os.chmod(folder, mode)


@pytest.fixture(scope="module")
def report(room):
    return check_room(room, timeout=600)


# ---- the load test ------------------------------------------------------------

def test_every_learner_logs_in_and_every_core_cell_completes(report):
    print(format_report(report))  # the figures, with -s
    assert len(report.learners) == USERS
    for learner in report.learners:
        assert learner.problem == "", (learner.name, learner.problem)
        assert learner.logged_in and learner.spawn_s > 0
        assert [c.cell_id for c in learner.cells] == list(CORE_CELLS)
        for cell in learner.cells:
            assert cell.status == "ok" and cell.error == "", (learner.name, cell)
    assert report.cells_ok == report.cells_total == USERS * len(CORE_CELLS)


def test_the_cells_answered_from_the_shared_server(report, room):
    for learner in report.learners:
        out = {c.cell_id: c.output for c in learner.cells}
        assert "remote" in out["01-002"] and room.kit_url in out["01-002"]
        assert out["01-005"].startswith("10 tokens: [")  # the server's tokenizer
        assert out["01-012"].strip() and "generated" in out["01-014"]
        assert out["01-017"].strip()  # the chat answer, not empty
        assert "why it stopped" in out["01-025"]
        assert out["01-027"].count("\n") >= 3 and out["01-027"].startswith("0 ")
        assert out["01-031"].strip() == "True"  # temperature 0: the same answer twice
        assert out["01-034"].strip() == "True"  # the same seed: the same answer
        days = out["01-048"].splitlines()[0]
        assert days.strip() and "Friday" not in days  # the stop string held


def test_the_server_counted_each_learners_own_key(report):
    # 10 answers per learner (a completion, a chat, 3 + 2 + 2 chats, one stop)
    assert set(report.usage) == set(NAMES)
    for name in NAMES:
        assert report.usage[name]["requests"] >= 10, report.usage[name]
        assert report.usage[name]["tokens"] > 0


def test_memory_per_learner_and_in_total_is_measured(report):
    for learner in report.learners:
        # a JupyterLab server and a kernel that imported the kit: tens of MB each,
        # not a model in every kernel (the starter alone maps 98 MB and more)
        assert 50e6 < learner.peak_rss < 1.5e9, learner
        assert 20e6 < learner.peak_kernel_rss < learner.peak_rss
    assert report.peak_learners_rss >= max(r.peak_rss for r in report.learners)
    assert report.peak_room_rss >= report.peak_learners_rss + report.server_rss
    assert report.hub_rss > 0 and report.server_rss > 0


def test_the_hub_listens_on_loopback_only(room):
    port = int(room.hub_url.rsplit(":", 1)[1])
    listening = [c for c in psutil.net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert listening and all(c.laddr.ip == "127.0.0.1" for c in listening)
    assert room.kit_url.startswith("http://127.0.0.1:")


def test_no_secret_reaches_a_log_or_the_config(room, report):
    secrets = room.secrets()
    hidden = [secrets["password"], secrets["server_key"], secrets["proxy_token"],
              *secrets["keys"].values()]
    assert all(len(s) >= 12 for s in hidden)
    texts = {"hub.log": room.hub_log.read_text(errors="replace"),
             "kit server log": room.server.log_path.read_text(errors="replace"),
             "config": (room.room / "jupyterhub_config.py").read_text(),
             "keys.json": (room.room / "keys.json").read_text(),
             "room.json": (room.room / "room.json").read_text(),
             "report": format_report(report)}
    assert "Spawning" in texts["hub.log"]  # the log is the one the hub writes
    for where, text in texts.items():
        for secret in hidden:
            assert secret not in text, f"a secret is in the {where}"
    for learner in report.learners:
        for cell in learner.cells:
            assert not any(s in cell.output for s in hidden)
    assert stat.S_IMODE((room.room / "secrets.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(room.room.stat().st_mode) == 0o700


# ---- learners kept apart --------------------------------------------------------

PROBE = r"""
import hashlib, json, os, pathlib, pwd
room, other = pathlib.Path(ROOM), pathlib.Path(OTHER_HOME)
out = {"uid": os.getuid(), "user": pwd.getpwuid(os.getuid()).pw_name,
       "own_key": hashlib.sha256(os.environ["KIT_REMOTE_API_KEY"].encode()).hexdigest(),
       "others": [], "files": {}}
for d in pathlib.Path("/proc").iterdir():
    try:
        if not d.name.isdigit() or d.stat().st_uid == os.getuid():
            continue
    except OSError:
        continue
    for part in ("environ", "cmdline"):
        try:
            out["others"].append((d / part).read_bytes().decode(errors="replace"))
        except OSError:
            pass
for f in ("secrets.json", "keys.json", "jupyterhub.sqlite", "hub.log",
          "cookie_secret", "jupyterhub_config.py", "room.json"):
    try:
        (room / f).read_bytes()
        out["files"][f] = "read"
    except OSError as e:
        out["files"][f] = type(e).__name__
try:
    os.listdir(other)
    out["files"]["other home"] = "read"
except OSError as e:
    out["files"]["other home"] = type(e).__name__
print(json.dumps(out))
"""


@pytest.mark.skipif(can_make_accounts() is not None, reason="needs root (useradd)")
def test_a_learners_kernel_cannot_read_another_learners_key_or_the_rooms_secrets(room,
                                                                               report):
    """From inside learner-1's kernel: its own key is there; learner-2's key,
    the room's password and the server's key are nowhere it can read."""
    import hashlib
    import json
    import pwd
    import time

    secrets = room.secrets()
    other_home = pwd.getpwnam(account_name("learner-2")).pw_dir
    code = f"ROOM, OTHER_HOME = {str(room.room)!r}, {other_home!r}\n" + PROBE
    result = run_learner(room.hub_url, "learner-1", secrets["password"],
                         [("probe", code)], deadline=time.monotonic() + 180)
    assert result.problem == "" and result.cells[0].status == "ok", result
    seen = json.loads(result.cells[0].output)
    assert seen["uid"] != 0 and seen["user"] == "kit-learner-1"
    own = secrets["keys"]["learner-1"]
    assert seen["own_key"] == hashlib.sha256(own.encode()).hexdigest()
    assert seen["others"], "the probe saw no other process at all"
    hidden = [secrets["password"], secrets["server_key"], secrets["proxy_token"],
              *(k for name, k in secrets["keys"].items() if name != "learner-1")]
    text = "\n".join(seen["others"])
    assert not [s for s in hidden if s in text], "another's secret is readable"
    assert all(v == "PermissionError" for v in seen["files"].values()), seen["files"]
    assert stat.S_IMODE(os.stat(other_home).st_mode) == 0o700


@pytest.mark.skipif(can_make_accounts() is not None, reason="needs root (useradd)")
def test_a_python_the_learners_cannot_run_is_named_before_anything_starts(
        tmp_path, monkeypatch):
    pytest.importorskip("jupyterhub")
    import kit.room.hub as hub

    monkeypatch.setattr(hub, "closed_to_learners", lambda paths: tmp_path / "closed")
    with pytest.raises(HubStartFailed, match="cannot run this Python: .*closed is "
                       "closed to other users.*chmod o\\+x"):
        start_room(["ana", "ben"], room=tmp_path / "room", port=0, quiet=True)
    assert not (tmp_path / "room").exists()


def test_several_learners_as_one_user_are_refused_unless_the_risk_is_named(
        tmp_path, monkeypatch):
    pytest.importorskip("jupyterhub")
    import kit.room.hub as hub

    monkeypatch.setattr(hub, "can_make_accounts", lambda: "the hub does not run as root")
    with pytest.raises(HubUnsafe, match="--shared-user-unsafe") as caught:
        start_room(["ana", "ben"], room=tmp_path / "room", port=0, quiet=True)
    assert "the hub does not run as root" in str(caught.value)
    assert "read the others' keys" in str(caught.value)
    assert not (tmp_path / "room").exists()  # nothing made, nothing started


@pytest.mark.skipif(can_make_accounts() is not None, reason="needs root (useradd)")
def test_each_learner_gets_a_private_account_that_is_removed_again(tmp_path):
    import pwd

    assert account_name("root") == "kit-root"  # never the real root
    assert len(account_name("a" * 32)) <= 32
    try:
        made = make_accounts(tmp_path, ["zz-kit-test"])
        entry = pwd.getpwnam("kit-zz-kit-test")
        assert made["zz-kit-test"]["uid"] == entry.pw_uid != 0
        home = os.stat(entry.pw_dir)
        assert home.st_uid == entry.pw_uid and stat.S_IMODE(home.st_mode) == 0o700
        again = make_accounts(tmp_path, ["zz-kit-test"])  # reused, not duplicated
        assert again["zz-kit-test"]["uid"] == entry.pw_uid
    finally:
        gone = remove_accounts(tmp_path, homes=True)
    assert gone == ["kit-zz-kit-test"]
    with pytest.raises(KeyError):
        pwd.getpwnam("kit-zz-kit-test")


def test_a_wrong_password_or_an_unknown_learner_is_refused(room):
    password = room.secrets()["password"]
    for name, given in (("learner-1", password + "x"), ("mallory", password)):
        with httpx.Client(timeout=30, trust_env=False) as client:
            with pytest.raises(RuntimeError, match="login refused"):
                _login(client, room.hub_url, name, given)
    r = httpx.post(f"{room.hub_url}/hub/api/users/learner-1/tokens", trust_env=False,
                   json={"auth": {"username": "learner-1", "password": "wrong"}})
    assert r.status_code == 403


def test_repeated_wrong_passwords_from_one_address_are_slowed(room, report):
    """After FREE_TRIES wrong passwords each try waits (the hub says so in its
    log); a right password clears the count."""
    password = room.secrets()["password"]
    start = len(room.hub_log.read_text(errors="replace"))
    with httpx.Client(timeout=120, trust_env=False) as client:
        for i in range(hub_config.FREE_TRIES + 2):
            with pytest.raises(RuntimeError, match="login refused"):
                _login(client, room.hub_url, "learner-3", f"wrong-{i}")
    new = room.hub_log.read_text(errors="replace")[start:]
    assert "wrong passwords from 127.0.0.1 in 300 s: this try waits 1 s" in new
    assert "this try waits 2 s" in new
    with httpx.Client(timeout=120, trust_env=False) as client:
        _login(client, room.hub_url, "learner-3", password)  # then the count is cleared
    seen = room.hub_log.read_text(errors="replace").count("wrong passwords from")
    with httpx.Client(timeout=120, trust_env=False) as client:
        with pytest.raises(RuntimeError, match="login refused"):
            _login(client, room.hub_url, "learner-3", "wrong-again")
    assert room.hub_log.read_text(errors="replace").count("wrong passwords from") == seen


def test_only_the_rooms_keys_open_the_shared_server(room):
    from kit.server.keys import read_keys

    keys = read_keys(room.room / "keys.json")
    assert sorted(keys) == sorted(NAMES)
    assert all(k.models == ("smollm2:135m",) and not k.revoked for k in keys.values())
    key = room.secrets()["keys"]["learner-1"]
    ok = httpx.get(room.kit_url + "/v1/models", trust_env=False,
                   headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200
    assert httpx.get(room.kit_url + "/v1/models", trust_env=False).status_code == 401
    wrong = httpx.get(room.kit_url + "/v1/models", trust_env=False,
                      headers={"Authorization": "Bearer not-a-key-of-this-room"})
    assert wrong.status_code == 401


def test_a_failing_cell_is_reported_not_missed(room, report):
    import time

    cells = [("fine", "print(6 * 7)"), ("boom", "raise ValueError('boom')"),
             ("never", "print('not reached')")]
    result = run_learner(room.hub_url, "learner-1", room.secrets()["password"], cells,
                         deadline=time.monotonic() + 120)
    assert result.problem == ""
    assert [(c.cell_id, c.status) for c in result.cells] == [("fine", "ok"), ("boom", "error")]
    assert result.cells[0].output == "42\n" and result.cells[1].error == "ValueError: boom"


def test_a_dropped_kernel_connection_is_made_again_and_counted(room, report, monkeypatch):
    """A busy machine can drop a kernel's websocket (CI once lost one of ten);
    the check connects again, as JupyterLab does, runs the cell, and says so."""
    import time

    import kit.room.hub_check as hub_check

    real, dropped = hub_check._execute, []

    def drop_once(ws, *args, **kw):  # the connection is lost under the first cell
        if not dropped:
            dropped.append(ws)
            ws.shutdown()
        return real(ws, *args, **kw)

    monkeypatch.setattr(hub_check, "_execute", drop_once)
    cells = [("first", "print(6 * 7)"), ("second", "print('still here')")]
    result = run_learner(room.hub_url, "learner-2", room.secrets()["password"], cells,
                         deadline=time.monotonic() + 120)
    assert result.problem == "" and result.reconnects == 1
    assert [(c.cell_id, c.status, c.output) for c in result.cells] == \
        [("first", "ok", "42\n"), ("second", "ok", "still here\n")]
    from kit.room.hub_check import RoomReport

    text = format_report(RoomReport([result], cells_per_learner=2, seconds=1.0))
    assert "kernel connections lost and made again: 1" in text


def test_a_learner_logs_in_in_a_real_browser_and_gets_jupyterlab(room, report, browser):
    """What a learner does: open the hub's address, type name and password,
    and land in their own JupyterLab with the workshop's notebooks."""
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    try:
        page.goto(room.hub_url + "/hub/login", wait_until="domcontentloaded")
        page.fill("input[name=username]", NAMES[0])
        page.fill("input[name=password]", room.secrets()["password"])
        page.click("input[type=submit], button[type=submit]")
        page.wait_for_url(f"**/user/{NAMES[0]}/lab**", timeout=120_000)
        page.wait_for_selector("#jp-main-dock-panel", timeout=120_000)
        page.dblclick(".jp-DirListing-item:has-text('notebooks')", timeout=120_000)
        page.wait_for_selector(".jp-DirListing-item:has-text('01_first_local_model')",
                               timeout=60_000)
        assert room.secrets()["password"] not in page.content()
    finally:
        page.close()


def test_another_process_finds_the_running_room(room):
    found = open_room(room.room)
    assert (found.hub_url, found.kit_url, found.learners) == \
        (room.hub_url, room.kit_url, room.learners)
    done = subprocess.run([sys.executable, "-m", "kit", "hub", "stop", "--dir",
                           str(room.room / "nowhere")], capture_output=True, text=True)
    assert done.returncode == 1 and "No JupyterHub room is running" in done.stderr


def test_stopping_the_room_leaves_no_process_and_frees_the_ports(room, report):
    hub_port = int(room.hub_url.rsplit(":", 1)[1])
    kit_port = int(room.kit_url.rsplit(":", 1)[1])
    assert len(room_processes(room.marker)) >= 2  # the hub and its proxy at least
    room.stop()
    assert room_processes(room.marker) == []
    assert room.hub.poll() is not None and not room.server.running
    for port in (hub_port, kit_port):
        assert not [c for c in psutil.net_connections("tcp")
                    if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
    assert not (room.room / "room.json").exists()
    room.stop()  # twice is fine


# ---- beyond one machine: learners on another kind of server ---------------------

def test_learners_can_use_llama_cpps_own_server_with_its_key(tmp_path):
    """As with a GPU server (docs/classroom.md B): llama-cpp-python's server
    stands in for llama.cpp's or vLLM, with an API key of its own."""
    pytest.importorskip("jupyterhub")
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are needed for JupyterHub's proxy")
    from kit.engines.llama_server import LlamaServer

    key = "gpu-server-key-0123456789"
    outside = LlamaServer("smollm2:135m")
    # without --interrupt_requests False, llama-cpp-python's server cuts off the
    # answer it is writing when another request arrives (found by this test)
    outside.cmd += ["--api_key", key, "--interrupt_requests", "False"]
    with _learners_can_run_this_python(), _accounts_removed(tmp_path / "room"), \
            outside, start_room(
            ["ana", "ben"], room=tmp_path / "room", port=0, server_url=outside.url,
            server_key=key, quiet=True) as room:
        assert room.server is None and room.kit_url == outside.url
        assert httpx.get(outside.url + "/v1/models", trust_env=False).status_code == 401
        cells = [c for c in core_cells() if c[0] in ("01-002", "01-005", "01-017")]
        report = check_room(room, cells=cells, timeout=300)
        assert report.cells_ok == report.cells_total == 6, format_report(report)
        for learner in report.learners:
            out = {c.cell_id: c.output for c in learner.cells}
            assert outside.url in out["01-002"] and out["01-017"].strip()
        assert key not in room.hub_log.read_text(errors="replace")
        marker = room.marker
    assert room_processes(marker) == []


# ---- the parts, without a hub ---------------------------------------------------

def test_core_cells_are_notebook_01s_own_unchanged():
    cells = dict(core_cells())
    assert list(cells) == list(CORE_CELLS)
    assert "kit.load()" in cells["01-002"]  # the room's server through KIT_REMOTE_URL
    assert "model.tokenize(" in cells["01-005"]
    with pytest.raises(ValueError, match="CORE_CELLS"):
        core_cells(["01-002", "no-such-cell"])


def test_learner_names_are_checked():
    assert hub_config.check_learners(["Ana", "ben", "ana"]) == ["ana", "ben"]
    for bad in (["ana smith"], ["../x"], ["-x"], []):
        with pytest.raises(BadParameter):
            hub_config.check_learners(bad)


def test_without_npm_the_message_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no node, no npm
    with pytest.raises(NpmMissing, match="sudo apt-get install nodejs npm"):
        hub_config.install_proxy(tmp_path / "cache")


def test_no_room_running_is_said_plainly(tmp_path):
    with pytest.raises(HubNotRunning, match="kit hub"):
        open_room(tmp_path)


@needs_npm
def test_the_config_is_what_jupyterhub_reads(tmp_path):
    pytest.importorskip("jupyterhub")
    config = hub_config.write_config(tmp_path, ["ana", "ben"], "http://127.0.0.1:9",
                                     port=8123, marker="m-1")
    from traitlets.config import PyFileConfigLoader

    c = PyFileConfigLoader(config.name, str(tmp_path)).load_config()
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8123"
    assert c.Authenticator.allowed_users == {"ana", "ben"}
    assert c.JupyterHub.spawner_class == "simple"
    env = c.Spawner.environment
    assert env["KIT_REMOTE_URL"] == "http://127.0.0.1:9" and env["KIT_HUB_ROOM"] == "m-1"

    class Spawner:  # what JupyterHub passes to a callable in the environment
        class user:
            name = "ben"

    assert env["KIT_REMOTE_API_KEY"](Spawner) == hub_config.read_secrets(tmp_path)["keys"]["ben"]
    assert (os.geteuid() == 0) == ("--allow-root" in c.Spawner.args)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


@needs_npm
def test_with_accounts_each_learner_runs_as_their_own_user(tmp_path):
    pytest.importorskip("jupyterhub")
    from jupyterhub.spawner import LocalProcessSpawner
    from traitlets.config import PyFileConfigLoader

    config = hub_config.write_config(
        tmp_path, ["ana"], "http://127.0.0.1:9", port=8123, marker="m-1",
        accounts={"ana": {"account": "kit-ana"}})
    c = PyFileConfigLoader(config.name, str(tmp_path)).load_config()
    assert issubclass(c.JupyterHub.spawner_class, LocalProcessSpawner)
    assert "--allow-root" not in c.Spawner.args  # a learner is never root


class _accounts_removed:
    """Remove the system users a room made, whatever happens in the block."""

    def __init__(self, room):
        self.room = room

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        remove_accounts(self.room, homes=True)
