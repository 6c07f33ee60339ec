"""Run untrusted Python code (model-generated programs) in a sandbox.

Layers, each independent of the others (tests exercise them separately):

1. **Process isolation**: a child process in a new session / process group, working directory a fresh temp dir that
   is deleted afterwards, minimal environment, ``python -I`` (no user site, no ``PYTHON*`` variables).
2. **Kernel limits** (``setrlimit`` in the child before ``exec``): CPU seconds, address space, file size (also caps
   stdout/stderr, which go to files), number of processes, open files; a wall-clock timeout in the parent.
3. **No network**: a new network namespace (``unshare(CLONE_NEWNET)``; only a down loopback inside) when permitted
   (root, or unprivileged user namespaces with ``CLONE_NEWUSER``).
4. **Privilege drop** when running as root: the child runs under a throw-away uid/gid (so ``RLIMIT_NPROC`` is enforced,
   which the kernel skips for root, and files outside the sandbox dir are not writable).
5. **Audit hook** (``sys.addaudithook`` in the child, on by default): refuses sockets, process creation
   (``fork``/``exec``/``subprocess``/``os.system``), ``ctypes`` loading, and opening files for writing outside the
   sandbox dir. It is a Python-level guard: the kernel layers above are the backstop.

Afterwards the whole process group, and under a throw-away uid every process of that uid, is killed.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATUSES = ("ok", "timeout", "memory", "runtime_error", "blocked", "killed")

_CLONE_NEWNET = 0x40000000
_CLONE_NEWUSER = 0x10000000
BLOCK_MARKER = "SandboxViolation"

_BOOTSTRAP = r'''
import os, sys
_ROOT = os.path.realpath(os.getcwd())
_BLOCK_PREFIXES = ("socket.", "subprocess.", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                   "os.system", "os.kill", "os.killpg", "ctypes.", "pty.", "os.setuid", "os.setgid")
_W = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
class SandboxViolation(PermissionError):
    pass
def _hook(event, args):
    if event.startswith(_BLOCK_PREFIXES):
        raise SandboxViolation("SandboxViolation: " + event + " is not allowed in the sandbox")
    if event in ("os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.symlink", "os.link", "os.chmod", "os.chown",
                 "os.truncate", "shutil.rmtree"):
        paths = [a for a in args if isinstance(a, (str, bytes, os.PathLike))]
        for p in paths:
            _check(p, event)
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int) or path is None:
            return
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & _W)
        if writing:
            _check(path, "open for writing")
def _check(p, what):
    p = os.fsdecode(p)
    if p in ("/dev/null",):
        return
    rp = os.path.realpath(os.path.join(_ROOT, p))
    if rp != _ROOT and not rp.startswith(_ROOT + os.sep):
        raise SandboxViolation("SandboxViolation: " + what + " outside the sandbox dir: " + p)
if os.environ.get("LRMREPRO_SANDBOX_HOOK") == "1":
    sys.addaudithook(_hook)
del os.environ["LRMREPRO_SANDBOX_HOOK"]
sys.argv = ["main.py"]
sys.path.insert(0, _ROOT)
import runpy
runpy.run_path("main.py", run_name="__main__")
'''


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits for one run. ``nproc`` is the number of processes the program may have (itself included)."""

    cpu_seconds: int = 5
    wall_seconds: float = 10.0
    memory_bytes: int = 1024 * 1024 * 1024
    file_size_bytes: int = 16 * 1024 * 1024
    nproc: int = 16
    open_files: int = 64
    network_namespace: bool = True
    drop_privileges: bool = True
    audit_hook: bool = True

    def __post_init__(self) -> None:
        for k in ("cpu_seconds", "wall_seconds", "memory_bytes", "file_size_bytes", "nproc", "open_files"):
            if not getattr(self, k) > 0:
                raise ValueError(f"sandbox limit {k} must be > 0, got {getattr(self, k)!r}")


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    status: str  # one of STATUSES
    stdout: str
    stderr: str
    returncode: int | None
    seconds: float
    isolation: tuple[str, ...]  # layers that were active, e.g. ("netns", "uid", "rlimits", "audit_hook")

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _count_procs(uid: int) -> int:
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


def _kill_uid(uid: int) -> None:
    """SIGKILL every process owned by ``uid`` (only ever called for a throw-away uid)."""
    for _ in range(3):
        found = False
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if os.stat(f"/proc/{d}").st_uid == uid:
                        os.kill(int(d), signal.SIGKILL)
                        found = True
                except OSError:
                    pass
        if not found:
            return
        time.sleep(0.05)


def _world_usable(path: str) -> bool:
    """Can an unrelated uid execute ``path`` (every parent directory searchable, the file readable+executable)?"""
    import stat

    rp = os.path.realpath(path)
    try:
        if os.stat(rp).st_mode & (stat.S_IROTH | stat.S_IXOTH) != (stat.S_IROTH | stat.S_IXOTH):
            return False
        d = os.path.dirname(rp)
        while True:
            if not os.stat(d).st_mode & stat.S_IXOTH:
                return False
            if d == "/":
                return True
            d = os.path.dirname(d)
    except OSError:
        return False


def sandbox_python(drop: bool) -> str | None:
    """The interpreter for sandboxed runs: ``sys.executable``, or (when running under a throw-away uid and that one
    is not reachable for other users, e.g. under ``/root``) the system ``python3``; None if there is none."""
    if not drop:
        return sys.executable
    cands = [sys.executable] + [shutil.which(n, path="/usr/local/bin:/usr/bin:/bin") for n in ("python3", "python")]
    for c in cands:
        if c and _world_usable(c):
            return c
    return None


def _read(path: Path, limit: int = 1 << 20) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")


def run_python(code: str, stdin: str = "", limits: Limits = Limits()) -> SandboxResult:
    """Run ``code`` as ``main.py`` with ``stdin`` as standard input under ``limits``; never raises for anything the
    program does. ``status``: ``ok`` (exit 0), ``timeout`` (wall clock or CPU limit), ``memory`` (``MemoryError`` or
    killed while allocating), ``blocked`` (the audit hook refused an action), ``runtime_error`` (other non-zero
    exit), ``killed`` (another signal)."""
    is_root = os.geteuid() == 0
    drop = limits.drop_privileges and is_root and sandbox_python(True) is not None
    python = sandbox_python(drop)
    sandbox_uid = random.randint(200_000, 2_000_000_000) if drop else None
    if drop:
        nproc = limits.nproc
    else:  # RLIMIT_NPROC counts all processes of the uid
        nproc = _count_procs(os.geteuid()) + limits.nproc
    isolation = ["session", "tmpdir", "rlimits"] + (["uid"] if drop else []) + (["audit_hook"] if limits.audit_hook else [])

    work = Path(tempfile.mkdtemp(prefix="lrmrepro-sbx-"))
    io_dir = Path(tempfile.mkdtemp(prefix="lrmrepro-sbx-io-"))
    try:
        box = work / "box"
        box.mkdir()
        (box / "main.py").write_text(code)
        (io_dir / "boot.py").write_text(_BOOTSTRAP)
        (io_dir / "stdin").write_text(stdin)
        if drop:
            os.chmod(work, 0o711)
            for p in (box, box / "main.py"):
                os.chown(p, sandbox_uid, sandbox_uid)
            os.chmod(io_dir, 0o711)
            os.chmod(io_dir / "boot.py", 0o644)
        netns = {"ok": False}
        r, w = os.pipe()

        def preexec() -> None:  # runs in the child between fork and exec
            os.close(r)
            status = b"-"
            if limits.network_namespace:
                libc = _libc()
                flags = _CLONE_NEWNET if is_root else (_CLONE_NEWUSER | _CLONE_NEWNET)
                if libc.unshare(flags) == 0:
                    status = b"N"
            os.write(w, status)
            os.close(w)
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_bytes, limits.file_size_bytes))
            resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if drop:
                os.setgroups([])
                os.setgid(sandbox_uid)
                os.setuid(sandbox_uid)
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(box), "TMPDIR": str(box),
               "PYTHONHASHSEED": "0", "LRMREPRO_SANDBOX_HOOK": "1" if limits.audit_hook else "0",
               "OMP_NUM_THREADS": "1"}
        t0 = time.monotonic()
        with open(io_dir / "stdin", "rb") as fin, open(io_dir / "stdout", "wb") as fout, \
                open(io_dir / "stderr", "wb") as ferr:
            proc = subprocess.Popen(
                [python, "-I", "-B", str(io_dir / "boot.py")], cwd=box, env=env, stdin=fin, stdout=fout,
                stderr=ferr, start_new_session=True, preexec_fn=preexec, pass_fds=(w,), close_fds=True,
            )
            os.close(w)
            with os.fdopen(r, "rb") as rf:
                netns["ok"] = rf.read(1) == b"N"
            timed_out = False
            try:
                rc = proc.wait(timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                if drop:
                    _kill_uid(sandbox_uid)
            if timed_out:
                rc = proc.wait()
        seconds = time.monotonic() - t0
        if netns["ok"]:
            isolation.append("netns")
        out, err = _read(io_dir / "stdout"), _read(io_dir / "stderr")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(io_dir, ignore_errors=True)

    last_line = err.strip().splitlines()[-1] if err.strip() else ""
    if timed_out or rc in (-signal.SIGXCPU,) or (rc == -signal.SIGKILL and seconds >= limits.cpu_seconds):
        status = "timeout"
    elif "MemoryError" in last_line:
        status = "memory"
    elif BLOCK_MARKER in err:
        status = "blocked"
    elif rc == 0:
        status = "ok"
    elif rc is not None and rc < 0:
        status = "memory" if rc in (-signal.SIGSEGV, -signal.SIGABRT) and "MemoryError" in err else "killed"
    else:
        status = "memory" if "MemoryError" in err else "runtime_error"
    return SandboxResult(status, out, err, None if timed_out else rc, seconds, tuple(isolation))
