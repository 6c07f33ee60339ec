"""Hostile programs in the sandbox: each is stopped or contained, and the host's files, processes and network are
untouched, with no process left behind.

Every attack runs as the invoking user (root in CI) and as an unprivileged user (uid 65534 through `setpriv`, the
way researchers run on clusters), each with all layers and with the Python audit hook off (the kernel layers alone:
namespaces, uid, rlimits). The unprivileged runs use the system interpreter and a copy of the sandbox module in a
world-readable folder."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from lrmrepro import sandbox
from lrmrepro.sandbox import Limits, SandboxResult, SandboxUnavailable, run_python

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(cpu_seconds=1, wall_seconds=4, memory_bytes=256 * 1024 * 1024, nproc=8)
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"


def _nobody_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "running as an unprivileged user needs root to switch to uid 65534 (this run is unprivileged itself)"
    if shutil.which("setpriv") is None or not Path(SYSTEM_PYTHON).exists():
        return "needs setpriv (util-linux) and /usr/bin/python3"
    return None


@pytest.fixture(scope="session")
def world_dir():
    """A world-readable folder holding the sandbox's modules (standard library only) and the runner, for runs as
    uid 65534."""
    d = Path(tempfile.mkdtemp(prefix="lrmrepro-sbx-test-", dir="/tmp"))
    os.chmod(d, 0o755)
    pkg = d / "lrmrepro"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for m in ("sandbox.py", "cgroup.py"):
        shutil.copy(ROOT / "src" / "lrmrepro" / m, pkg / m)
    shutil.copy(ROOT / "tests" / "fixtures" / "sandbox_runner.py", d / "sandbox_runner.py")
    for f in [*d.iterdir(), *pkg.iterdir()]:
        os.chmod(f, 0o755 if f.is_dir() else 0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def host_dir():
    """A host folder anybody may write (so only the sandbox, not file permissions, can keep a program out)."""
    d = Path(tempfile.mkdtemp(prefix="lrmrepro-host-", dir="/tmp"))
    os.chmod(d, 0o777)
    (d / "victim.txt").write_text("precious")
    (d / "secret.txt").write_text("TOP-SECRET-7781")
    for f in d.iterdir():
        os.chmod(f, 0o666)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["invoking-user", "nobody"])
def run(request, world_dir):
    """run(code, stdin="", **limits) -> SandboxResult, as the invoking user or as uid 65534."""
    if request.param == "nobody":
        why = _nobody_unavailable()
        if why:
            pytest.skip(why)

    def _run(code: str, stdin: str = "", **limits) -> SandboxResult:
        lim = {**FAST, **limits}
        if request.param == "invoking-user":
            return run_python(code, stdin, Limits(**lim))
        proc = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                               SYSTEM_PYTHON, "-I", str(world_dir / "sandbox_runner.py")],
                              input=json.dumps({"code": code, "stdin": stdin, "limits": lim}),
                              capture_output=True, text=True, timeout=60, cwd="/")
        assert proc.returncode == 0, proc.stderr[-3000:]
        data = json.loads(proc.stdout)
        data["isolation"] = tuple(data["isolation"])
        return SandboxResult(**data)

    _run.user = request.param
    return _run


LAYERS = pytest.mark.parametrize("hook", [True, False], ids=["hook", "kernel-only"])

# switches the audit hook off from inside: its globals are reachable through the frames of the bootstrap
DISARM = """
import sys
_f = sys._getframe()
while _f is not None and "_hook" not in _f.f_globals:
    _f = _f.f_back
if _f is not None:
    _f.f_globals["_BLOCK_PREFIXES"] = ("nothing.",)
    _f.f_globals["_check"] = lambda path, what: None
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _procs_with(marker: bytes) -> list[int]:
    found = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if marker in Path(f"/proc/{p}/cmdline").read_bytes():
                    found.append(int(p))
            except OSError:
                pass
    return found


def _assert_isolated(r: SandboxResult) -> None:
    assert r.level == "namespaces" and {"userns", "mountns", "pidns", "netns"} <= set(r.isolation), r.isolation


# ------------------------------------------------------------------------------------------------ ordinary programs
def test_ok_program_reads_stdin(run):
    r = run("import sys\nprint(sum(map(int, sys.stdin.read().split())))", "1 2 3\n")
    assert r.status == "ok" and r.stdout == "6\n" and r.returncode == 0
    _assert_isolated(r)


def test_runtime_error_reported(run):
    r = run("1/0")
    assert r.status == "runtime_error" and "ZeroDivisionError" in r.stderr


def test_program_may_use_its_working_dir_and_tmp(run):
    r = run("open('scratch.txt', 'w').write('x')\nprint(open('scratch.txt').read())\n"
            "import tempfile\nwith tempfile.TemporaryFile() as f:\n    f.write(b'y')\nprint('tmp ok')")
    assert r.status == "ok" and r.stdout == "x\ntmp ok\n"


# ------------------------------------------------------------------------------------------------ resource limits
@LAYERS
def test_infinite_loop_stopped(run, hook):
    r = run("while True:\n    pass", audit_hook=hook)
    assert r.status == "timeout" and r.seconds < 4


def test_sleeping_program_hits_wall_timeout(run):
    r = run("import time\ntime.sleep(60)", wall_seconds=1.0)
    assert r.status == "timeout" and r.returncode is None and r.seconds < 3


@LAYERS
def test_huge_allocation_stopped(run, hook):
    r = run("x = bytearray(8 * 1024**3)\nprint('allocated')", audit_hook=hook)
    assert r.status == "memory" and "allocated" not in r.stdout


# six processes of 150 MB each: every one is under the 256 MB per-process limit, together they are 3.5 times it
MANY_PROCESSES = DISARM + """
import os, time
kids = []
for i in range(6):
    pid = os.fork()
    if pid == 0:
        b = b"x" * (150 << 20)
        time.sleep(1.0)
        os._exit(0)
    kids.append(pid)
print("children", [os.waitpid(k, 0)[1] for k in kids])
"""


def test_memory_is_capped_for_the_whole_program(run):
    """The program's processes share one memory cap where a cgroup can be made (as root here); where not, the
    result says the limits were per process."""
    r = run(MANY_PROCESSES, audit_hook=False, wall_seconds=15, cpu_seconds=10)
    if r.program_limits.startswith("program:"):
        assert "cgroup" in r.isolation
        assert r.status == "memory", (r.status, r.stdout, r.stderr[-500:])
        assert "children [0, 0, 0, 0, 0, 0]" not in r.stdout
    else:
        assert r.program_limits.startswith("per process: ") and len(r.program_limits) > len("per process: ")
        assert "cgroup" not in r.isolation
        if os.geteuid() == 0 and run.user == "invoking-user" and Path("/sys/fs/cgroup/memory").is_dir():
            pytest.fail(f"root on a cgroup v1 machine made no cgroup: {r.program_limits}")
        assert r.status == "ok" and "children [0, 0, 0, 0, 0, 0]" in r.stdout  # what per-process limits let by


def test_program_cgroup_is_removed_after_the_run():
    from lrmrepro import cgroup
    cg, note = cgroup.create(64 << 20, 4)
    if cg is None:
        pytest.skip(f"no cgroup here: {note}")
    cg.remove()
    r = run_python("print(1)", limits=Limits(**FAST))
    assert r.ok
    assert not any(d.exists() for d in cg.dirs)
    parents = {d.parent for d in cg.dirs}
    left = [c for p in parents for c in p.iterdir() if c.name.startswith(f"lrmrepro-sbx-{os.getpid()}-")]
    assert left == []


@LAYERS
def test_fork_bomb_stopped_and_reaped(run, hook):
    marker = f"{random.randint(10**8, 10**9)}"
    code = DISARM + (f"import os\nos.environ['BOMB'] = '{marker}'\nwhile True:\n    try:\n        if os.fork() == 0:\n"
                     f"            os.execv('/usr/bin/sleep', ['sleep', '30.{marker}'])\n    except OSError:\n        pass\n")
    r = run(code, audit_hook=hook)
    assert r.status in ("timeout", "killed")  # the bomb catches the refusal (hook) or EAGAIN (rlimit) and spins
    time.sleep(0.2)
    assert _procs_with(f"30.{marker}".encode()) == []  # no process started by the bomb survives


# ------------------------------------------------------------------------------------------------ host files
@LAYERS
def test_write_outside_the_sandbox_is_contained(run, hook, host_dir):
    target = host_dir / "escaped.txt"
    r = run(f"open({str(target)!r}, 'w').write('pwned')\nprint('wrote')", audit_hook=hook)
    assert r.status == ("blocked" if hook else "runtime_error") and "wrote" not in r.stdout
    assert not target.exists()


@LAYERS
def test_dir_fd_write_and_delete_cannot_reach_host_files(run, hook, host_dir):
    code = DISARM + f"""
import os
fd = os.open({str(host_dir)!r}, os.O_RDONLY)
w = os.open("pwned.txt", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
os.write(w, b"pwned")
os.unlink("victim.txt", dir_fd=fd)
print("escaped")
"""
    r = run(code, audit_hook=hook)
    assert "escaped" not in r.stdout and r.status != "ok"
    assert not (host_dir / "pwned.txt").exists()
    assert (host_dir / "victim.txt").read_text() == "precious"


@LAYERS
def test_tmp_is_private(run, hook):
    name = f"/tmp/lrmrepro-escape-{random.randint(10**8, 10**9)}"
    r = run(DISARM + f"open({name!r}, 'w').write('pwned')\nprint('wrote')", audit_hook=hook)
    assert not Path(name).exists()
    if not hook:  # the kernel layers let it write: into the sandbox's own /tmp, gone with it
        assert r.status == "ok" and r.stdout == "wrote\n"


@LAYERS
def test_host_files_are_not_readable(run, hook, host_dir):
    r = run(f"print(open({str(host_dir / 'secret.txt')!r}).read())", audit_hook=hook)
    assert "TOP-SECRET" not in r.stdout + r.stderr
    assert r.status == "runtime_error" and "FileNotFoundError" in r.stderr


# ------------------------------------------------------------------------------------------------ host processes
def _victim(user: str) -> subprocess.Popen:
    argv = ["sleep", "60"]
    if user == "nobody":
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
    return subprocess.Popen(argv)


@LAYERS
def test_disarmed_hook_cannot_kill_host_processes(run, hook):
    """The audit hook switched off through the bootstrap's frames, then kill a host process of the same user and
    the sandbox's parent."""
    victim = _victim(run.user)
    try:
        time.sleep(0.1)
        code = DISARM + f"""
import os, signal
for pid in ({victim.pid}, os.getppid()):
    try:
        os.kill(pid, signal.SIGKILL)
        print("killed", pid)
    except OSError as e:
        print("refused", pid, e.errno)
"""
        r = run(code, audit_hook=hook)
        assert _alive(victim.pid), r
        assert f"killed {victim.pid}" not in r.stdout
    finally:
        victim.kill()
        victim.wait()


@LAYERS
def test_fork_exec_and_double_forked_daemon_do_not_outlive_the_run(run, hook):
    marker = f"{random.randint(10**8, 10**9)}"
    code = DISARM + f"""
import os, _posixsubprocess
# a process started with the low-level primitive subprocess is built on
r, w = os.pipe()
_posixsubprocess.fork_exec(["/usr/bin/sleep", "31.{marker}"], [b"/usr/bin/sleep"], True, (), None, None,
                           -1, -1, -1, -1, -1, -1, r, w, False, False, -1, None, None, None, -1, None, False)
# a setsid + double-fork daemon
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/usr/bin/sleep", ["sleep", "32.{marker}"])
    os._exit(0)
import time
time.sleep(0.3)
print("started")
"""
    r = run(code, audit_hook=hook)
    time.sleep(0.3)
    assert _procs_with(marker.encode()) == [], r


# ------------------------------------------------------------------------------------------------ network
@LAYERS
def test_socket_to_loopback_receives_nothing(run, hook):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.2)
    port = srv.getsockname()[1]
    received: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (socket.timeout, OSError):
                continue
            received.append(conn.recv(100) or b"<connected>")
            conn.close()

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    code = DISARM + (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                     "s.sendall(b'exfiltrated')\nprint('sent')")
    try:
        r = run(code, audit_hook=hook)
    finally:
        stop.set()
        th.join()
        srv.close()
    assert r.status in ("blocked", "runtime_error") and "sent" not in r.stdout
    assert received == []


# ------------------------------------------------------------------------------------------------ policy
def test_bad_limits_rejected():
    with pytest.raises(ValueError, match="cpu_seconds"):
        Limits(cpu_seconds=0)


@pytest.fixture
def no_bwrap(monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    sandbox._probe.cache_clear()
    yield
    sandbox._probe.cache_clear()


def test_without_namespaces_code_is_refused_unless_weak_is_accepted(no_bwrap):
    with pytest.raises(SandboxUnavailable, match="bubblewrap.*allow_weak_isolation"):
        run_python("print(1)", limits=Limits(**FAST))
    r = run_python("print(1)", limits=Limits(**FAST, allow_weak_isolation=True))
    assert r.status == "ok" and r.level == "weak" and "namespaces" not in r.isolation
    assert sandbox.isolation_level(Limits(allow_weak_isolation=True)) == "weak"


def test_weak_sandbox_still_limits_and_hooks(no_bwrap, host_dir):
    weak = dict(FAST, allow_weak_isolation=True)
    assert run_python("while True:\n    pass", limits=Limits(**weak)).status == "timeout"
    r = run_python(f"open({str(host_dir / 'x.txt')!r}, 'w').write('1')", limits=Limits(**weak))
    assert r.status == "blocked" and not (host_dir / "x.txt").exists()


def test_isolation_level_here_is_namespaces():
    """This machine (and CI) has bubblewrap and user namespaces: `make test` installs bubblewrap."""
    assert sandbox.namespaces_unavailable() is None
    assert sandbox.isolation_level() == "namespaces"
