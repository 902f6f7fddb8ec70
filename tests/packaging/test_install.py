"""`make install DESTDIR=…` (packaging/install.sh, issue 20): every file it lays out with its owner and
mode, the installed unit through `systemd-analyze verify` and `security --offline=true`, the installed
camhub started from the staged venv as the unprivileged `camhub` user, then an upgrade that keeps the
config, data and keys, a rollback, and uninstall with and without PURGE=1.

What cannot run here: the system half of `sudo make install` (apt-get, `systemctl enable --now`, the
journal) needs a booted systemd; CI's machine has none. As root (CI), the `camhub` system user is
created with the script's own `user` step, as `make install` would on a box; as another user the
ownership checks are skipped and the daemon runs as that user.

One install is shared by the module (a venv with PyAV, OpenCV and numpy is ~430 MB and ~25 s from
pip's cache); the lifecycle test installs a second time into the same tree, which is the upgrade.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hub.config import load as load_config
from hub.consent import pairing
from hub.store import migrations
from tests.conftest import PAIRING_RE, READY_RE, free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packaging" / "install.sh"
VENV = "/opt/camhub/.venv"
LATEST_SCHEMA = migrations()[-1][0]
AS_ROOT = os.geteuid() == 0
FP_RE = re.compile(r"owner UI https url=(\S+) ca_sha256=([0-9A-F:]{95})")

pytestmark = pytest.mark.timeout(600)


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def make(target: str, root: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    args = [f"{k}={v}" for k, v in variables.items()]
    return run("make", "--no-print-directory", "-C", str(REPO), target, f"DESTDIR={root}", *args)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@dataclass
class Staged:
    root: Path
    seconds: float
    install_log: str

    def path(self, final: str) -> Path:
        return self.root / final.lstrip("/")


@pytest.fixture(scope="module")
def staged() -> Iterator[Staged]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    if AS_ROOT:
        ok(run("bash", str(SCRIPT), "user"))
    # Under /tmp, traversable: the camhub user must reach the staged venv, as it reaches /opt on a box.
    root = Path(tempfile.mkdtemp(prefix="camhub-destdir-", dir="/tmp"))
    root.chmod(0o755)
    try:
        started = time.monotonic()
        log = ok(make("install", root))
        yield Staged(root=root, seconds=time.monotonic() - started, install_log=log)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def reachable_tmp() -> Iterator[Path]:
    """A temp dir the camhub user can reach (pytest's own are 0700 root): for the test's config."""
    path = Path(tempfile.mkdtemp(prefix="camhub-test-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _group(name: str) -> int:
    return grp.getgrnam(name).gr_gid


def _tree(root: Path, skip: Path) -> dict[str, tuple[str, int, int, int]]:
    """Every path under root except `skip`'s contents: kind, mode bits, uid, gid."""
    out: dict[str, tuple[str, int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip:
            dirnames.clear()
            continue
        for name in [*dirnames, *filenames]:
            p = here / name
            st = p.lstat()
            kind = "link" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "file"
            out["/" + str(p.relative_to(root))] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


def test_every_file_owner_and_mode(staged: Staged) -> None:
    tree = _tree(staged.root, staged.path(VENV))
    root_ids = (0, 0)
    camhub = _ids("camhub") if AS_ROOT else (os.getuid(), os.getgid())
    conf_group = (0, camhub[1]) if AS_ROOT else (os.getuid(), os.getgid())
    me = root_ids if AS_ROOT else (os.getuid(), os.getgid())
    expected = {
        "/etc": ("dir", 0o755, *me),
        "/etc/camhub": ("dir", 0o750, *conf_group),
        "/etc/camhub/camhub.toml": ("file", 0o640, *conf_group),
        "/opt": ("dir", 0o755, *me),
        "/opt/camhub": ("dir", 0o755, *me),
        "/opt/camhub/.venv": ("dir", 0o755, *me),
        "/opt/camhub/README.md": ("file", 0o644, *me),
        "/opt/camhub/camhub.example.toml": ("file", 0o644, *me),
        "/usr": ("dir", 0o755, *me),
        "/usr/local": ("dir", 0o755, *me),
        "/usr/local/bin": ("dir", 0o755, *me),
        "/usr/local/bin/camhub": ("link", 0o777, *me),
        "/usr/local/lib": ("dir", 0o755, *me),
        "/usr/local/lib/systemd": ("dir", 0o755, *me),
        "/usr/local/lib/systemd/system": ("dir", 0o755, *me),
        "/usr/local/lib/systemd/system/camhub.service": ("file", 0o644, *me),
        "/var": ("dir", 0o755, *me),
        "/var/lib": ("dir", 0o755, *me),
        "/var/lib/camhub": ("dir", 0o700, *camhub),
    }
    # The daemon may have run (another test); what it made inside the state dir is checked there.
    tree = {k: v for k, v in tree.items() if not k.startswith("/var/lib/camhub/")}
    assert {k: (v[0], oct(v[1]), v[2], v[3]) for k, v in tree.items()} == {
        k: (v[0], oct(v[1]), v[2], v[3]) for k, v in expected.items()
    }
    assert os.readlink(staged.path("/usr/local/bin/camhub")) == f"{VENV}/bin/camhub"
    unit = staged.path("/usr/local/lib/systemd/system/camhub.service").read_bytes()
    assert unit == (REPO / "systemd" / "camhub.service").read_bytes()
    assert staged.path("/opt/camhub/README.md").read_bytes() == (REPO / "README.md").read_bytes()
    example = (REPO / "configs" / "camhub.example.toml").read_bytes()
    assert staged.path("/opt/camhub/camhub.example.toml").read_bytes() == example
    print(f"make install DESTDIR=… took {staged.seconds:.1f} s")


def test_venv_is_root_owned_readable_and_names_its_final_path(staged: Staged) -> None:
    venv = staged.path(VENV)
    writable, unreadable, foreign = [], [], []
    for dirpath, dirnames, filenames in os.walk(venv):
        for name in [*dirnames, *filenames]:
            st = (Path(dirpath) / name).lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            if st.st_mode & 0o022:
                writable.append(f"{dirpath}/{name}")
            if not st.st_mode & 0o004:
                unreadable.append(f"{dirpath}/{name}")
            if AS_ROOT and (st.st_uid, st.st_gid) != (0, 0):
                foreign.append(f"{dirpath}/{name}")
    # The service user must be able to read its code and never to change it.
    assert writable == [] and unreadable == [] and foreign == []
    for script in ("camhub", "camhub-sim", "camhub-agency", "camhub-relay"):
        first = (venv / "bin" / script).read_text().splitlines()[0]
        assert first == f"#!{VENV}/bin/python", script
    for path in [*(venv / "bin").iterdir(), venv / "pyvenv.cfg"]:
        if path.is_file() and not path.is_symlink():
            text = path.read_bytes()
            assert str(staged.root).encode() not in text, path
    # A real install (not an editable one pointing back at this checkout).
    site = venv / "lib" / "python3.11" / "site-packages"
    assert (site / "hub" / "daemon.py").is_file()
    assert (site / "hub" / "store" / "migrations" / "0001_foundation.sql").is_file()
    assert not list(site.glob("__editable__*")) and not list(site.glob("*.egg-link"))
    assert str(REPO) not in "".join(p.read_text() for p in site.glob("*.pth"))


def test_config_is_the_example_with_name_bind_and_no_cameras(staged: Staged) -> None:
    config = staged.path("/etc/camhub/camhub.toml")
    cfg = load_config(config)
    host = os.uname().nodename.split(".")[0].lower()
    assert cfg.hub.name == (re.sub(r"[^a-z0-9-]", "-", host)[:63].strip("-") or "camhub")
    assert cfg.hub.bind == "127.0.0.1"  # a staged tree: loopback until the box's admin sets it
    assert cfg.hub.data_dir == Path("/var/lib/camhub")
    assert cfg.cameras == ()  # the example's cameras (someone's address, a published WHIP token) are off
    installed = config.read_text().splitlines()
    example = (REPO / "configs" / "camhub.example.toml").read_text().splitlines()
    assert installed[0].startswith("# Written by make install") and installed[2] == ""
    commented = 0
    for mine, theirs in zip(installed[3:], example, strict=True):
        if mine == theirs:
            continue
        if mine == "# " + theirs:
            commented += 1
        else:
            assert re.match(r"(name|bind) = ", theirs), (mine, theirs)
            assert re.match(r"(name|bind) = ", mine), (mine, theirs)
    assert commented >= 10


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_installed_unit(staged: Staged, tmp_path: Path) -> None:
    # verify --root needs the system's own units (sysinit.target, …) inside the root, which a staged
    # tree does not have: a root of hard links to the installed unit and ExecStart (the very files
    # under test) beside a copy of the host's units. Nothing in the unit is rewritten.
    vroot = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", vroot / "usr/lib/systemd/system", symlinks=True)
    for final in ("/usr/local/lib/systemd/system/camhub.service", f"{VENV}/bin/camhub"):
        (vroot / final.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        os.link(staged.path(final), vroot / final.lstrip("/"))
    result = run("systemd-analyze", "verify", f"--root={vroot}", "camhub.service", timeout=60)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if "camhub" in line] == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_security_exposure(staged: Staged) -> None:
    result = run(
        "systemd-analyze",
        "security",
        "--offline=true",
        f"--root={staged.root}",
        "--threshold=20",  # in tenths: fail above 2.0
        "--no-pager",
        "camhub.service",
        timeout=60,
    )
    m = re.search(r"Overall exposure level for camhub\.service: (\d+\.\d+)", result.stdout)
    assert m is not None, result.stdout + result.stderr
    print(f"systemd-analyze security: exposure {m.group(1)}")
    assert float(m.group(1)) <= 2.0
    assert result.returncode == 0, result.stderr


# -- the installed camhub, run --------------------------------------------------------------------


def _test_config(staged: Staged, directory: Path) -> Path:
    """The installed config with only what a test needs changed: the staged state dir, free loopback
    ports (HTTPS too, so the CA fingerprint is logged), and no mDNS (it would multicast on the LAN)."""
    text = staged.path("/etc/camhub/camhub.toml").read_text()
    for old, new in (
        ('data_dir = "/var/lib/camhub"', f'data_dir = "{staged.path("/var/lib/camhub")}"'),
        ("\nport = 8080 ", f"\nport = {free_port()} "),
        ("\n# https_port = 8443 ", "\nhttps_port = 0 "),
        ("[discovery]\nenabled = true", "[discovery]\nenabled = false"),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = directory / "test.toml"
    path.write_text(text)
    if AS_ROOT:
        os.chown(path, 0, _group("camhub"))
    path.chmod(0o640)
    return path


@dataclass
class Running:
    proc: subprocess.Popen[str]
    log_path: Path
    url: str = ""
    hub_id: str = ""

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)


@contextlib.contextmanager
def installed_camhub(staged: Staged, config: Path, log_path: Path) -> Iterator[Running]:
    """The staged venv's own interpreter running its `camhub` script (whose shebang names the final
    /opt path), as the camhub user, with nothing of this checkout's environment."""
    venv = staged.path(VENV)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}
    ids = {"user": "camhub", "group": "camhub", "extra_groups": []} if AS_ROOT else {}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(venv / "bin" / "python"), str(venv / "bin" / "camhub"), "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd="/",
            text=True,
            **ids,  # type: ignore[arg-type]
        )
    running = Running(proc=proc, log_path=log_path)
    try:
        deadline = time.monotonic() + 60
        while not (m := READY_RE.search(running.log())):
            assert proc.poll() is None, f"exited {proc.returncode}:\n{running.log()}"
            assert time.monotonic() < deadline, f"not ready in 60 s:\n{running.log()}"
            time.sleep(0.05)
        running.url, running.hub_id = m.group(1), m.group(2)
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _as_camhub(staged: Staged, code: str, *args: str) -> str:
    """Python as the data's owner: a root-run sqlite3 would leave root-owned -shm files behind."""
    ids = {"user": "camhub", "group": "camhub", "extra_groups": []} if AS_ROOT else {}
    result = subprocess.run(
        ["/usr/bin/python3", "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **ids,  # type: ignore[arg-type]
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _schema(staged: Staged) -> int:
    db = staged.path("/var/lib/camhub/camhub.sqlite")
    return int(
        _as_camhub(
            staged,
            "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA user_version').fetchone()[0])",
            str(db),
        )
    )


def test_installed_camhub_starts_as_the_camhub_user(staged: Staged, reachable_tmp: Path) -> None:
    tmp_path = reachable_tmp
    config = _test_config(staged, tmp_path)
    with installed_camhub(staged, config, tmp_path / "camhub.log") as hub:
        with urllib.request.urlopen(hub.url + "/api/v1/hub", timeout=10) as resp:
            assert resp.status == 200
        status = Path(f"/proc/{hub.proc.pid}/status").read_text()
        uid = _ids("camhub")[0] if AS_ROOT else os.getuid()
        assert re.search(rf"^Uid:\s+{uid}\s+{uid}\s+{uid}\s+{uid}$", status, re.M), status
        # Its compiled modules come from the staged venv, not from this checkout's .venv.
        maps = Path(f"/proc/{hub.proc.pid}/maps").read_text()
        assert str(staged.path(VENV)) in maps
        assert str(REPO / ".venv") not in maps
        assert hub.stop() == 0
    log = hub.log()
    code = PAIRING_RE.search(log)
    fp = FP_RE.search(log)
    assert code is not None and fp is not None, log

    # What `sudo make install` prints from the journal, here from the same lines read from a file.
    report = ok(_report(log))
    assert (
        f"Pairing code:     {code.group(1)}  (single use, valid {pairing.LIFETIME_SECONDS // 60} minutes;"
        in report
    )
    assert f"CA fingerprint:   SHA-256 {fp.group(2)}" in report
    port = fp.group(1).rsplit(":", 1)[1].rstrip("/")
    assert f"Open on the LAN:  https://192.168.1.10:{port}/  (or {fp.group(1)})" in report
    assert f"hub id {hub.hub_id}" in report

    state = staged.path("/var/lib/camhub")
    owner = _ids("camhub") if AS_ROOT else (os.getuid(), os.getgid())
    for path in [state, *state.rglob("*")]:
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == owner, path
        if path.is_dir():
            assert stat.S_IMODE(st.st_mode) == 0o700, path
    keys = sorted(p.name for p in (state / "keys").iterdir())
    assert {"hub.key", "web-ca.key", "web.key"} <= set(keys), keys
    for key in (state / "keys").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((state / "camhub.sqlite").stat().st_mode) == 0o600


def _report(log: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "report", "192.168.1.10"], input=log, capture_output=True, text=True, timeout=60
    )


def _inode(path: Path) -> int:
    return path.stat().st_ino


def test_upgrade_keeps_config_data_and_keys_then_rollback_and_uninstall(
    staged: Staged, reachable_tmp: Path
) -> None:
    tmp_path = reachable_tmp
    config = _test_config(staged, tmp_path)
    with installed_camhub(staged, config, tmp_path / "first.log") as first:
        assert first.stop() == 0
    state = staged.path("/var/lib/camhub")
    conf = staged.path("/etc/camhub/camhub.toml")
    hub_key = (state / "keys" / "hub.key").read_bytes()
    conf_before = conf.read_bytes()
    old_venv = _inode(staged.path(VENV) / "pyvenv.cfg")
    assert _schema(staged) == LATEST_SCHEMA

    # A database a newer camhub migrated is refused before anything is built or replaced.
    bump = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(f'PRAGMA user_version={sys.argv[2]}'); c.commit()"
    db = str(state / "camhub.sqlite")
    _as_camhub(staged, bump, db, str(LATEST_SCHEMA + 1))
    refused = make("install", staged.root)
    assert refused.returncode != 0
    assert f"at schema {LATEST_SCHEMA + 1}, newer than this camhub's ({LATEST_SCHEMA})" in refused.stderr
    assert _inode(staged.path(VENV) / "pyvenv.cfg") == old_venv
    assert not staged.path(VENV + ".new").exists()
    _as_camhub(staged, bump, db, str(LATEST_SCHEMA))

    # The upgrade: a new venv, the replaced one kept, config and keys untouched, the database copied.
    started = time.monotonic()
    out = ok(make("install", staged.root))
    upgrade_s = time.monotonic() - started
    assert "keeping /etc/camhub/camhub.toml" in out
    assert conf.read_bytes() == conf_before
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    assert (state / "keys" / "hub.key").read_bytes() == hub_key
    assert _inode(staged.path(VENV + ".previous") / "pyvenv.cfg") == old_venv
    new_venv = _inode(staged.path(VENV) / "pyvenv.cfg")
    assert new_venv != old_venv
    backup = state / "camhub.sqlite.previous"
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    if AS_ROOT:
        assert backup.stat().st_uid == _ids("camhub")[0]
    with installed_camhub(staged, config, tmp_path / "second.log") as second:
        assert second.hub_id == first.hub_id  # same key, same identity
        assert second.stop() == 0
    assert _schema(staged) == LATEST_SCHEMA
    print(f"upgrade (second make install) took {upgrade_s:.1f} s")

    # Rollback swaps the venvs (twice = forward again); the schema did not move, so the database stays.
    ok(make("rollback", staged.root))
    assert _inode(staged.path(VENV) / "pyvenv.cfg") == old_venv
    assert _inode(staged.path(VENV + ".previous") / "pyvenv.cfg") == new_venv
    ok(make("rollback", staged.root))
    assert _inode(staged.path(VENV) / "pyvenv.cfg") == new_venv

    # Had the upgrade migrated the schema, the previous version could not read it: rollback says so and
    # changes nothing, unless RESTORE_DB=1 brings back the copy taken before the upgrade.
    _as_camhub(staged, bump, db, str(LATEST_SCHEMA + 1))
    refused = make("rollback", staged.root)
    assert refused.returncode != 0 and "RESTORE_DB=1" in refused.stderr, refused.stderr
    assert _inode(staged.path(VENV) / "pyvenv.cfg") == new_venv
    ok(make("rollback", staged.root, RESTORE_DB="1"))
    assert _inode(staged.path(VENV) / "pyvenv.cfg") == old_venv
    assert _schema(staged) == LATEST_SCHEMA
    assert (state / "camhub.sqlite.rolled-back").exists()
    with installed_camhub(staged, config, tmp_path / "third.log") as third:
        assert third.hub_id == first.hub_id
        assert third.stop() == 0

    # Uninstall: the service and /opt/camhub go, config, data and keys stay; PURGE=1 takes those too.
    ok(make("uninstall", staged.root))
    for gone in ("/opt/camhub", "/usr/local/lib/systemd/system/camhub.service", "/usr/local/bin/camhub"):
        assert not os.path.lexists(staged.path(gone)), gone
    assert conf.read_bytes() == conf_before
    assert (state / "keys" / "hub.key").read_bytes() == hub_key
    ok(make("uninstall", staged.root, PURGE="1"))
    left = [p for p in staged.root.rglob("*") if not p.is_dir()]
    assert left == []
    assert not staged.path("/etc/camhub").exists() and not state.exists()


# -- choosing the name and the address ------------------------------------------------------------


def test_hub_name_comes_from_the_host_name(tmp_path: Path) -> None:
    if not AS_ROOT or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (a UTS namespace of its own to set a host name in)")
    # A host name of its own in a UTS namespace; the script then prints the config it would write.
    set_and_run = (
        "import os, socket, sys; socket.sethostname(sys.argv[1]); "
        "os.execvp('bash', ['bash', sys.argv[2], 'config'])"
    )
    for host, name in (
        ("Front_Porch.example.org", "front-porch"),
        ("-Pi-", "pi"),
        ("x" * 64, "x" * 63),
        ("___", "camhub"),
    ):
        result = run(
            "unshare",
            "--uts",
            "/usr/bin/python3",
            "-c",
            set_and_run,
            host,
            str(SCRIPT),
            env={"BIND": "192.168.1.10"},
        )
        assert re.search(rf'^name = "{name}" ', ok(result), re.M), (host, result.stdout[:800])
        assert re.search(r'^bind = "192\.168\.1\.10" ', result.stdout, re.M)
    bad = run("bash", str(SCRIPT), "config", env={"HUB_NAME": "Front Porch", "BIND": "192.168.1.10"})
    assert bad.returncode != 0 and "HUB_NAME=Front Porch" in bad.stderr
    bad = run("bash", str(SCRIPT), "config", env={"HUB_NAME": "porch", "BIND": "192.168.1.300"})
    assert bad.returncode != 0 and "BIND=192.168.1.300 is not an IP address" in bad.stderr


def test_lan_address_is_the_private_one_on_the_default_route() -> None:
    """In a network namespace of its own (nothing is sent anywhere): a LAN and a public address on the
    interface of the default route, and a second private one elsewhere."""
    ns = f"camhub-{secrets.token_hex(4)}"
    made = run("ip", "netns", "add", ns, timeout=30)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace (needs root and iproute2): {made.stderr.strip()}")
    try:
        for cmd in (
            "link set lo up",
            "addr add 192.168.77.10/24 dev lo",
            "addr add 203.0.113.5/24 dev lo",
        ):
            ok(run("ip", "-n", ns, *cmd.split(), timeout=30))
        none = ok(run("ip", "netns", "exec", ns, "bash", str(SCRIPT), "lan-address", timeout=30))
        assert none == ""  # no default route: nothing to choose, so `install` asks or wants BIND
        ok(run("ip", "-n", ns, "route", "add", "default", "dev", "lo", timeout=30))
        found = ok(run("ip", "netns", "exec", ns, "bash", str(SCRIPT), "lan-address", timeout=30))
        assert found == "192.168.77.10\n"
        config = ok(
            subprocess.run(
                ["ip", "netns", "exec", ns, "bash", str(SCRIPT), "config"],
                capture_output=True,
                text=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
                env={k: v for k, v in os.environ.items() if k not in ("BIND", "DESTDIR")},
            )
        )
        assert re.search(r'^bind = "192\.168\.77\.10" ', config, re.M)
        ok(run("ip", "-n", ns, "addr", "add", "10.1.2.3/8", "dev", "lo", timeout=30))
        two = subprocess.run(
            ["ip", "netns", "exec", ns, "bash", str(SCRIPT), "config"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if k not in ("BIND", "DESTDIR")},
        )
        assert two.returncode != 0
        assert "found 2 private IPv4 addresses" in two.stderr and "BIND=" in two.stderr
    finally:
        run("ip", "netns", "del", ns, timeout=30)
