"""A control group per sandboxed program: memory and process count capped for the program as a whole.

``setrlimit`` caps each process (``RLIMIT_AS`` per process; ``RLIMIT_NPROC`` per uid): a program that forks six
children of 800 MB each holds 4.8 GB under a 1 GiB per-process limit. A cgroup charges every page of every process
of the program (tmpfs files included) to one counter, and the kernel's OOM killer ends the program when it passes
the cap.

Created below this process's own cgroup, which works where the machine lets this process manage its cgroup: as
root on cgroup v1 (``memory`` and ``pids`` hierarchies, as on this project's test machines), or on cgroup v2 where
the ``memory`` and ``pids`` controllers are delegated (systemd ``Delegate=yes``, a container's own subtree). Where
that is refused (an unprivileged user on most machines), :func:`create` returns the reason and the sandbox says in
each result that its limits are per process (``SandboxResult.program_limits``).
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own_paths(proc_cgroup: str = "/proc/self/cgroup") -> dict[str, str]:
    """controller -> this process's cgroup path ('' for the v2 unified hierarchy)."""
    out: dict[str, str] = {}
    for line in Path(proc_cgroup).read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


@dataclasses.dataclass
class ProgramCgroup:
    """One program's cgroup: ``dirs`` are its directories (one for v2, one per controller for v1)."""

    version: int
    dirs: tuple[Path, ...]

    def attach_self(self) -> None:
        """Move the calling process into the cgroup (called in the child between fork and exec: plain syscalls only)."""
        pid = str(os.getpid()).encode()
        for d in self.dirs:
            fd = os.open(d / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def _memory_dir(self) -> Path:
        return self.dirs[0]

    def oom_killed(self) -> bool:
        """Did the kernel kill a process of the program for passing the memory cap?"""
        d = self._memory_dir()
        try:
            if self.version == 2:
                events = dict(line.split() for line in (d / "memory.events").read_text().splitlines())
                return int(events.get("oom_kill", 0)) > 0
            oom = dict(line.split() for line in (d / "memory.oom_control").read_text().splitlines())
            if "oom_kill" in oom:  # kernels since 4.13
                return int(oom["oom_kill"]) > 0
            return int((d / "memory.failcnt").read_text()) > 0
        except (OSError, ValueError):
            return False

    def peak_bytes(self) -> int | None:
        d = self._memory_dir()
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            try:
                return int((d / name).read_text())
            except (OSError, ValueError):
                continue
        return None

    def kill_all(self) -> None:
        """SIGKILL every process left in the cgroup."""
        for _ in range(50):
            pids: set[int] = set()
            for d in self.dirs:
                try:
                    pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
                except (OSError, ValueError):
                    pass
            if not pids:
                return
            if self.version == 2 and (self.dirs[0] / "cgroup.kill").exists():
                try:
                    (self.dirs[0] / "cgroup.kill").write_text("1")
                except OSError:
                    pass
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.02)

    def remove(self) -> None:
        self.kill_all()
        for d in self.dirs:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # busy until the last process has been reaped
                    time.sleep(0.02)


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def create(memory_bytes: int, max_procs: int, root: Path = ROOT,
           proc_cgroup: str = "/proc/self/cgroup") -> tuple[ProgramCgroup | None, str]:
    """A new cgroup capping memory (``memory_bytes``, swap included where the kernel accounts it) and processes
    (``max_procs``); ``(None, reason)`` where this machine or user does not allow one."""
    try:
        own = _own_paths(proc_cgroup)
    except OSError as e:
        return None, f"cannot read {proc_cgroup}: {e}"
    name = f"lrmrepro-sbx-{os.getpid()}-{random.randrange(1 << 32):08x}"
    made: list[Path] = []

    def undo(reason: str) -> tuple[None, str]:
        for d in made:
            try:
                d.rmdir()
            except OSError:
                pass
        return None, reason

    v1_mem, v1_pids = root / "memory", root / "pids"
    if own.get("memory") is not None and own.get("pids") is not None and v1_mem.is_dir() and v1_pids.is_dir():
        try:
            mem = v1_mem / own["memory"].lstrip("/") / name
            pids = v1_pids / own["pids"].lstrip("/") / name
            mem.mkdir()
            made.append(mem)
            pids.mkdir()
            made.append(pids)
            _write(mem / "memory.limit_in_bytes", str(memory_bytes))
            if (mem / "memory.memsw.limit_in_bytes").exists():
                _write(mem / "memory.memsw.limit_in_bytes", str(memory_bytes))
            _write(pids / "pids.max", str(max_procs))
        except OSError as e:
            return undo(f"cgroup v1 refused ({e.strerror or e}: {e.filename or ''})")
        return ProgramCgroup(1, (mem, pids)), "cgroup v1 (memory, pids)"
    v2 = root / "unified" if (root / "unified" / "cgroup.controllers").exists() else root
    if "" in own and (v2 / "cgroup.controllers").exists():
        parent = v2 / own[""].lstrip("/")
        try:
            enabled = (parent / "cgroup.subtree_control").read_text().split()
        except OSError as e:
            return None, f"cgroup v2: cannot read {parent / 'cgroup.subtree_control'}: {e.strerror}"
        missing = [c for c in ("memory", "pids") if c not in enabled]
        if missing:
            return None, (f"cgroup v2: the {' and '.join(missing)} controller is not delegated to {parent} "
                          "(a systemd unit with Delegate=yes, or a container with its own cgroup, gives it)")
        try:
            d = parent / name
            d.mkdir()
            made.append(d)
            _write(d / "memory.max", str(memory_bytes))
            if (d / "memory.swap.max").exists():
                _write(d / "memory.swap.max", "0")
            _write(d / "pids.max", str(max_procs))
        except OSError as e:
            return undo(f"cgroup v2 refused ({e.strerror or e}: {e.filename or ''})")
        return ProgramCgroup(2, (d,)), "cgroup v2 (memory, pids)"
    return None, "no memory and pids cgroup controllers mounted"
