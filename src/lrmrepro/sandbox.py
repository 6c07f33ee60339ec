"""Run untrusted Python code (model-generated programs) in a sandbox where the kernel, not Python, draws the line.

Layers (docs/tasks.md, "Sandbox"):

1. **Namespaces** (bubblewrap, ``bwrap``; the mechanism Flatpak uses): the program runs in its own user, mount, PID,
   network, IPC, UTS and cgroup namespaces. Its file system is a fresh tmpfs root holding only ``/usr`` (and the
   ``/bin``/``/lib`` links), the interpreter's prefix, read-only, its own ``/proc`` and a minimal ``/dev``; the only
   writable places are two private, size-capped tmpfs (``/box``, its working directory, and ``/tmp``). The host's
   home directories, ``/tmp``, ``/etc`` and every other file are absent; there is no network (a down loopback only);
   no host process is visible, so none can be signalled or traced; every capability is dropped; a new session
   (no terminal injection). When the program exits, or the sandbox's parent dies (``--die-with-parent``), the PID
   namespace ends and the kernel kills every process left in it (daemons, ``setsid`` + double-fork grandchildren).
2. **Privilege drop** when running as root: bubblewrap itself starts under a throw-away uid/gid, so the program owns
   nothing on the host and ``RLIMIT_NPROC`` counts only its own processes.
3. **Kernel limits** (``setrlimit`` before ``exec``): CPU seconds, address space, file size (also caps stdout/stderr,
   which go to files), number of processes, open files, no core files; a wall-clock timeout in the parent.
4. **A cgroup per program** (:mod:`lrmrepro.cgroup`, where the machine lets this process make one): memory and
   process count capped for all the program's processes together; where it cannot, each result says its limits
   were per process (``SandboxResult.program_limits``).
5. **Audit hook** (``sys.addaudithook`` in the child, on by default): refuses sockets, process creation, ``ctypes``
   and writes outside the working directory. A Python-level guard that code can switch off: the layers above do
   not depend on it.

Where the namespaces cannot be had (no ``bwrap``, or a kernel that refuses unprivileged user namespaces, as some
clusters do), :func:`run_python` refuses with :class:`SandboxUnavailable`, unless the caller explicitly accepts the
weaker sandbox (``Limits(allow_weak_isolation=True)``; config ``sandbox.allow_weak_isolation``): then only layers
2-5 apply, with a new process session and a fresh temporary working directory. The isolation actually used is
reported with every result (``SandboxResult.isolation``, ``SandboxResult.level``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lrmrepro import cgroup

STATUSES = ("ok", "timeout", "memory", "runtime_error", "blocked", "killed")
LEVELS = ("namespaces", "weak")
BLOCK_MARKER = "SandboxViolation"
BOX = "/box"  # the program's working directory inside the namespaces
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; RHEL/Fedora: dnf install bubblewrap), "
                "and make sure the kernel allows unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 "
                "or user.max_user_namespaces > 0)")

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
_main = sys.argv[1]
if os.environ.get("LRMREPRO_SANDBOX_HOOK") == "1":
    sys.addaudithook(_hook)
del os.environ["LRMREPRO_SANDBOX_HOOK"]
sys.argv = ["main.py"]
sys.path.insert(0, _ROOT)
import runpy
runpy.run_path(_main, run_name="__main__")
'''


class SandboxUnavailable(RuntimeError):
    """Namespaces are not available here and the weaker sandbox was not accepted."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits for one run. ``nproc`` is the number of processes the program may have (itself included).

    ``allow_weak_isolation``: where namespaces are unavailable, run with process, uid, rlimit and audit-hook layers
    only instead of refusing. ``namespaces=False`` asks for the weak sandbox outright (tests of the other layers);
    it is refused unless ``allow_weak_isolation`` is also set."""

    cpu_seconds: int = 5
    wall_seconds: float = 10.0
    memory_bytes: int = 1024 * 1024 * 1024
    file_size_bytes: int = 16 * 1024 * 1024
    tmpfs_bytes: int = 64 * 1024 * 1024
    nproc: int = 16
    open_files: int = 64
    namespaces: bool = True
    allow_weak_isolation: bool = False
    drop_privileges: bool = True
    audit_hook: bool = True
    program_cgroup: bool = True  # memory and processes capped for the whole program where a cgroup can be made

    def __post_init__(self) -> None:
        for k in ("cpu_seconds", "wall_seconds", "memory_bytes", "file_size_bytes", "tmpfs_bytes", "nproc",
                  "open_files"):
            if not getattr(self, k) > 0:
                raise ValueError(f"sandbox limit {k} must be > 0, got {getattr(self, k)!r}")


@dataclasses.dataclass(frozen=True)
class SandboxResult:
    status: str  # one of STATUSES
    stdout: str
    stderr: str
    returncode: int | None
    seconds: float
    isolation: tuple[str, ...]  # layers that were active, e.g. ("namespaces", "uid", "rlimits", "audit_hook")
    # what memory_bytes and nproc capped: "program: cgroup v1 (memory, pids)", or "per process: <why no cgroup>"
    program_limits: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def level(self) -> str:
        return "namespaces" if "namespaces" in self.isolation else "weak"


# ------------------------------------------------------------------------------------------------ host helpers
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
    """The interpreter for sandboxed runs (resolved, so that its prefix can be mounted): ``sys.executable``, or
    (when running under a throw-away uid and that one is not reachable for other users, e.g. under ``/root``) the
    system ``python3``; None if there is none."""
    cands = [sys.executable] + ([shutil.which(n, path="/usr/local/bin:/usr/bin:/bin") for n in ("python3", "python")]
                                if drop else [])
    for c in cands:
        if c and (not drop or _world_usable(c)):
            return os.path.realpath(c)
    return None


def _python_prefix(python: str) -> str:
    """The installation prefix of an interpreter (``<prefix>/bin/python3.x``): mounted read-only in the sandbox."""
    return os.path.dirname(os.path.dirname(os.path.realpath(python)))


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def _bwrap_argv(bwrap: str, python: str, io_dir: Path, limits: Limits) -> list[str]:
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):  # merged-/usr links, or the real folders
        host = Path("/") / link
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), f"/{link}"]
        elif host.is_dir():
            argv += ["--ro-bind", str(host), f"/{link}"]
    prefix = _python_prefix(python)
    if not prefix.startswith("/usr/"):
        argv += ["--ro-bind", prefix, prefix]
    size = str(limits.tmpfs_bytes)
    argv += ["--proc", "/proc", "--dev", "/dev",
             "--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", BOX,
             "--ro-bind", str(io_dir / "boot.py"), "/.sandbox/boot.py",
             "--ro-bind", str(io_dir / "main.py"), "/.sandbox/main.py",
             "--chdir", BOX, "--uid", "65534", "--gid", "65534", "--hostname", "sandbox"]
    return argv


@functools.lru_cache(maxsize=None)
def _probe(euid: int, drop: bool) -> str | None:
    """None when bubblewrap runs a trivial program here (as the uid the sandbox will use), else why not."""
    bwrap = bwrap_path()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    python = sandbox_python(drop)
    if python is None:
        return "no interpreter that a throw-away uid can execute"
    io_dir = Path(tempfile.mkdtemp(prefix="lrmrepro-sbx-probe-"))
    try:
        (io_dir / "boot.py").write_text("")
        (io_dir / "main.py").write_text("print('ok')")
        uid = random.randint(200_000, 2_000_000_000) if drop else None
        if drop:
            os.chmod(io_dir, 0o711)
            for f in ("boot.py", "main.py"):
                os.chmod(io_dir / f, 0o644)

        def preexec() -> None:
            if uid is not None:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)

        argv = _bwrap_argv(bwrap, python, io_dir, Limits()) + [python, "-I", "-S", "/.sandbox/main.py"]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30, preexec_fn=preexec,
                                 env={"PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.SubprocessError) as err:
            return f"bubblewrap could not be started ({err})"
        finally:
            if uid is not None:
                _kill_uid(uid)
        if out.returncode != 0 or out.stdout.strip() != "ok":
            return f"bubblewrap failed here ({(out.stderr or out.stdout).strip()[:200] or out.returncode})"
        return None
    finally:
        shutil.rmtree(io_dir, ignore_errors=True)


def namespaces_unavailable(limits: Limits = Limits()) -> str | None:
    """Why the namespace sandbox cannot run here (None when it can). Cached per process."""
    drop = limits.drop_privileges and os.geteuid() == 0
    return _probe(os.geteuid(), drop)


def isolation_level(limits: Limits = Limits()) -> str:
    """The isolation :func:`run_python` will use with ``limits``: ``namespaces`` or ``weak``; raises
    :class:`SandboxUnavailable` when namespaces are unavailable (or not asked for) and weak is not accepted."""
    why = "namespaces were not asked for (Limits(namespaces=False))" if not limits.namespaces else \
        namespaces_unavailable(limits)
    if why is None:
        return "namespaces"
    if limits.allow_weak_isolation:
        return "weak"
    raise SandboxUnavailable(
        f"refusing to run model-generated code: {why}. The namespace sandbox keeps such code away from your files, "
        f"processes and network; to get it, {INSTALL_HINT}. To accept a weaker sandbox (process limits and a Python "
        "audit hook only, which a hostile program can get around), set sandbox.allow_weak_isolation: true in the "
        "configuration.")


def program_limits(limits: Limits = Limits()) -> str:
    """What ``memory_bytes`` and ``nproc`` will cap here: ``program: <cgroup>`` or ``per process: <why>`` (a probe:
    a cgroup is made and removed)."""
    if not limits.program_cgroup:
        return "per process: not asked for (Limits(program_cgroup=False))"
    cg, note = cgroup.create(limits.memory_bytes, limits.nproc + 2)
    if cg is None:
        return f"per process: {note}"
    cg.remove()
    return f"program: {note}"


def _read(path: Path, limit: int = 1 << 20) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")


# ------------------------------------------------------------------------------------------------ running
def run_python(code: str, stdin: str = "", limits: Limits = Limits()) -> SandboxResult:
    """Run ``code`` as ``main.py`` with ``stdin`` as standard input under ``limits``; never raises for anything the
    program does (only :class:`SandboxUnavailable` when no acceptable sandbox exists here). ``status``: ``ok``
    (exit 0), ``timeout`` (wall clock or CPU limit), ``memory`` (``MemoryError`` or killed while allocating),
    ``blocked`` (the audit hook refused an action), ``runtime_error`` (other non-zero exit), ``killed`` (another
    signal)."""
    level = isolation_level(limits)
    is_root = os.geteuid() == 0
    drop = limits.drop_privileges and is_root and sandbox_python(True) is not None
    python = sandbox_python(drop)
    sandbox_uid = random.randint(200_000, 2_000_000_000) if drop else None
    # RLIMIT_NPROC counts every process of the (real) uid: a throw-away uid starts from zero
    nproc = limits.nproc if drop else _count_procs(os.geteuid()) + limits.nproc
    if level == "namespaces":
        nproc += 2  # bubblewrap's own process and the PID namespace's init
    isolation = ["session", "rlimits"] + (["uid"] if drop else []) + (["audit_hook"] if limits.audit_hook else [])
    if level == "namespaces":
        isolation = ["namespaces", "userns", "mountns", "pidns", "netns", "ro_root", "tmpfs"] + isolation
    else:
        isolation.insert(1, "tmpdir")

    cg, cg_note = (None, "not asked for (Limits(program_cgroup=False))")
    if limits.program_cgroup:
        cg, cg_note = cgroup.create(limits.memory_bytes, nproc if drop else limits.nproc + 2)
    program_limits = f"program: {cg_note}" if cg is not None else f"per process: {cg_note}"
    if cg is not None:
        isolation.append("cgroup")

    io_dir = Path(tempfile.mkdtemp(prefix="lrmrepro-sbx-io-"))
    work = None
    try:
        (io_dir / "main.py").write_text(code)
        (io_dir / "boot.py").write_text(_BOOTSTRAP)
        (io_dir / "stdin").write_text(stdin)
        if drop:
            os.chmod(io_dir, 0o711)
            for f in ("boot.py", "main.py"):
                os.chmod(io_dir / f, 0o644)
        if level == "namespaces":
            argv = _bwrap_argv(bwrap_path(), python, io_dir, limits) + [
                python, "-I", "-B", "/.sandbox/boot.py", "/.sandbox/main.py"]
            cwd = "/"
        else:
            work = Path(tempfile.mkdtemp(prefix="lrmrepro-sbx-"))
            shutil.copy(io_dir / "main.py", work / "main.py")
            if drop:
                os.chown(work, sandbox_uid, sandbox_uid)
                os.chown(work / "main.py", sandbox_uid, sandbox_uid)
            argv = [python, "-I", "-B", str(io_dir / "boot.py"), str(work / "main.py")]
            cwd = str(work)

        def preexec() -> None:  # runs in the child between fork and exec
            if cg is not None:
                cg.attach_self()
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

        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": BOX if level == "namespaces" else cwd,
               "TMPDIR": "/tmp" if level == "namespaces" else cwd, "PYTHONHASHSEED": "0",
               "LRMREPRO_SANDBOX_HOOK": "1" if limits.audit_hook else "0", "OMP_NUM_THREADS": "1"}
        t0 = time.monotonic()
        timed_out = False
        with open(io_dir / "stdin", "rb") as fin, open(io_dir / "stdout", "wb") as fout, \
                open(io_dir / "stderr", "wb") as ferr:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=fin, stdout=fout, stderr=ferr,
                                    start_new_session=True, preexec_fn=preexec, close_fds=True)
            try:
                rc = proc.wait(timeout=limits.wall_seconds)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:  # the whole process group; with namespaces the PID namespace dies with bubblewrap
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                if drop:
                    _kill_uid(sandbox_uid)
                if cg is not None:
                    cg.kill_all()
            if timed_out:
                rc = proc.wait()
        seconds = time.monotonic() - t0
        out, err = _read(io_dir / "stdout"), _read(io_dir / "stderr")
        oom = cg is not None and cg.oom_killed()
    finally:
        if cg is not None:
            cg.remove()
        shutil.rmtree(io_dir, ignore_errors=True)
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)

    last_line = err.strip().splitlines()[-1] if err.strip() else ""
    if oom and not timed_out:  # the kernel ended the program for passing its memory cap (cgroup)
        status = "memory"
    elif timed_out or rc in (-signal.SIGXCPU,) or (rc == -signal.SIGKILL and seconds >= limits.cpu_seconds):
        status = "timeout"
    elif "MemoryError" in last_line:
        status = "memory"
    elif BLOCK_MARKER in err:
        status = "blocked"
    elif rc == 0:
        status = "ok"
    elif rc is not None and rc < 0:
        status = "memory" if rc in (-signal.SIGSEGV, -signal.SIGABRT) and "MemoryError" in err else "killed"
    elif rc is not None and rc > 128 and level == "namespaces":
        # bubblewrap reports a program killed by signal N as exit status 128 + N
        sig = rc - 128
        status = "timeout" if sig == signal.SIGXCPU or (sig == signal.SIGKILL and seconds >= limits.cpu_seconds) \
            else ("memory" if "MemoryError" in err else "killed")
    else:
        status = "memory" if "MemoryError" in err else "runtime_error"
    return SandboxResult(status, out, err, None if timed_out else rc, seconds, tuple(isolation), program_limits)
