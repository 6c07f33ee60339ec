"""Hostile programs in the sandbox: each is stopped and reported, and the host is untouched. Every attack runs
twice: with all layers, and with the Python audit hook off (only the kernel layers: namespaces, uid, rlimits)."""

import os
import socket
import threading

import pytest

from lrmrepro.sandbox import Limits, run_python

FAST = dict(cpu_seconds=1, wall_seconds=4, memory_bytes=256 * 1024 * 1024, nproc=8)
LAYERS = pytest.mark.parametrize("hook", [True, False], ids=["hook", "kernel-only"])


def test_ok_program_reads_stdin():
    r = run_python("import sys\nprint(sum(map(int, sys.stdin.read().split())))", "1 2 3\n", Limits(**FAST))
    assert r.status == "ok" and r.stdout == "6\n" and r.returncode == 0


def test_runtime_error_reported():
    r = run_python("1/0", limits=Limits(**FAST))
    assert r.status == "runtime_error" and "ZeroDivisionError" in r.stderr


@LAYERS
def test_infinite_loop_stopped(hook):
    r = run_python("while True:\n    pass", limits=Limits(**FAST, audit_hook=hook))
    assert r.status == "timeout" and r.seconds < 4


def test_sleeping_program_hits_wall_timeout():
    r = run_python("import time\ntime.sleep(60)", limits=Limits(**{**FAST, "wall_seconds": 1.0}))
    assert r.status == "timeout" and r.returncode is None and r.seconds < 3


@LAYERS
def test_huge_allocation_stopped(hook):
    r = run_python("x = bytearray(8 * 1024**3)\nprint('allocated')", limits=Limits(**FAST, audit_hook=hook))
    assert r.status == "memory" and "allocated" not in r.stdout


def _procs_of_uid_from(before: set[int]) -> set[int]:
    return {int(p) for p in os.listdir("/proc") if p.isdigit()} - before


@LAYERS
def test_fork_bomb_stopped_and_reaped(hook):
    before = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    r = run_python(code, limits=Limits(**FAST, audit_hook=hook))
    assert r.status in ("timeout", "killed")  # the bomb catches the refusal (hook) or EAGAIN (rlimit) and spins
    # no process started by the bomb survives
    left = [p for p in _procs_of_uid_from(before)
            if os.path.exists(f"/proc/{p}/cmdline") and b"boot.py" in open(f"/proc/{p}/cmdline", "rb").read()]
    assert left == []


@LAYERS
def test_write_outside_tempdir_blocked(hook, tmp_path):
    target = tmp_path / "escaped.txt"
    code = f"open({str(target)!r}, 'w').write('pwned')\nprint('wrote')"
    r = run_python(code, limits=Limits(**FAST, audit_hook=hook))
    assert r.status == ("blocked" if hook else "runtime_error") and "wrote" not in r.stdout
    assert not target.exists()
    # writing inside the sandbox dir is fine
    ok = run_python("open('scratch.txt', 'w').write('x')\nprint(open('scratch.txt').read())", limits=Limits(**FAST, audit_hook=hook))
    assert ok.status == "ok" and ok.stdout == "x\n"


@LAYERS
def test_socket_to_loopback_receives_nothing(hook):
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
    code = (f"import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "s.sendall(b'exfiltrated')\nprint('sent')")
    try:
        r = run_python(code, limits=Limits(**FAST, audit_hook=hook))
    finally:
        stop.set()
        th.join()
        srv.close()
    assert r.status in ("blocked", "runtime_error") and "sent" not in r.stdout
    assert received == []
    if not hook:
        assert "netns" in r.isolation or os.geteuid() != 0


def test_bad_limits_rejected():
    with pytest.raises(ValueError, match="cpu_seconds"):
        Limits(cpu_seconds=0)
