"""Running a task's Python code in a separate, limited process.

What the sandbox does:
- a new process (`python -I`: no user site, no PYTHON* variables) in a scratch directory of its
  own, with an empty environment (no secrets of the app reach it), in a session of its own so that
  everything it starts is killed with it;
- limits from the kernel (`setrlimit`): CPU seconds, address space (memory), the size of any file
  it writes, open files, processes (where the app does not run as root), no core dumps;
- a wall-clock limit, output cut at `output_bytes` (the process is killed once it has written
  that much: printing gigabytes costs nothing), the scratch directory's size watched (filling the
  disk is cut off at `disk_mb`);
- no network: a network namespace of its own with no interface but a down loopback (unshare, as
  root or where unprivileged user namespaces are allowed); where the kernel refuses that, sockets
  are refused inside Python before the code runs, which stops ordinary code but not a determined
  escape through ctypes: `Outcome.network` says which;
- run as `nobody` when the app runs as root.

What it does not do: it is not a VM or a container. The code runs on the same kernel, can read
the files `nobody` can read (the app's data directory should not be world-readable), and kernel
bugs are out of its reach. Configure a stronger sandbox (gVisor, a container runtime) around the
app where untrusted people use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
NOBODY = 65534
# Runs first in the sandbox when no network namespace could be had: sockets refused in Python.
NO_SOCKETS = """
import socket as _s
def _refused(*a, **k):
    raise PermissionError("network access is not allowed in the sandbox")
_s.socket = _refused
_s.create_connection = _refused
_s.socketpair = _refused
_s.getaddrinfo = _refused
del _s
"""


@dataclass(frozen=True)
class Limits:
    cpu_s: int = 10
    wall_s: float = 20.0
    memory_mb: int = 512
    output_bytes: int = 64 * 1024
    file_mb: int = 16
    disk_mb: int = 64
    open_files: int = 64
    processes: int = 16


@dataclass(frozen=True)
class Outcome:
    """What the code did: its exit status, what it wrote (cut to the limit), and why it was
    stopped, if it was."""

    exit_code: int | None
    stdout: str
    stderr: str
    stopped: str | None  # None: it ended by itself; else why it was stopped
    seconds: float
    network: Literal["namespace", "python"]  # how the network was taken away

    @property
    def ok(self) -> bool:
        return self.stopped is None and self.exit_code == 0


class SandboxUnavailable(Exception):
    """Code cannot be run safely here (say why)."""


async def run_python(
    code: str,
    files: Mapping[str, bytes] | None = None,
    limits: Limits = Limits(),
    within: Path | None = None,
) -> Outcome:
    """Run `code` in a sandbox, with `files` (name -> content) beside it in a scratch directory
    of its own, made under `within` (default: the system's temporary directory) and removed
    afterwards."""
    python = await asyncio.to_thread(interpreter)
    own_network = await asyncio.to_thread(can_unshare)
    network: Literal["namespace", "python"] = "namespace" if own_network else "python"
    as_root = os.geteuid() == 0
    prelude = "" if network == "namespace" else NO_SOCKETS
    scratch = await asyncio.to_thread(
        _prepare, within, prelude + "\n" + code, dict(files or {}), as_root
    )
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        python, "-I", "-B", "main.py",
        cwd=scratch, env={"PATH": "/usr/bin:/bin", "HOME": str(scratch), "LANG": "C.UTF-8"},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, start_new_session=True,
        preexec_fn=lambda: _confine(limits, network == "namespace", as_root),
    )  # fmt: skip
    stopped: str | None = None
    budget = [limits.output_bytes]
    out: list[bytes] = []
    err: list[bytes] = []

    async def drain(stream: asyncio.StreamReader | None, into: list[bytes]) -> None:
        nonlocal stopped
        assert stream is not None
        while chunk := await stream.read(65536):
            keep = chunk[: max(budget[0], 0)]
            into.append(keep)
            budget[0] -= len(chunk)
            if budget[0] < 0:
                stopped = stopped or f"it wrote more than {limits.output_bytes:,} bytes"
                _kill(process.pid)

    async def watch_disk() -> None:
        nonlocal stopped
        while True:
            await asyncio.sleep(0.2)
            used = await asyncio.to_thread(_size, scratch)
            if used > limits.disk_mb * 2**20:
                stopped = stopped or f"it wrote more than {limits.disk_mb} MB of files"
                _kill(process.pid)
                return

    watcher = asyncio.create_task(watch_disk())
    try:
        await asyncio.wait_for(
            asyncio.gather(drain(process.stdout, out), drain(process.stderr, err), process.wait()),
            limits.wall_s,
        )
    except TimeoutError:
        stopped = stopped or f"it ran longer than {limits.wall_s:g} s"
        _kill(process.pid)
    finally:
        watcher.cancel()
        _kill(process.pid)  # whatever it started goes with it
        with contextlib.suppress(ProcessLookupError):
            await process.wait()
        await asyncio.to_thread(shutil.rmtree, scratch, True)
    code_ = process.returncode
    if stopped is None and code_ is not None and code_ < 0:
        stopped = _signalled(-code_, limits)
    return Outcome(
        None if stopped else code_,
        b"".join(out).decode(errors="replace"),
        b"".join(err).decode(errors="replace"),
        stopped,
        time.monotonic() - started,
        network,
    )


def _prepare(within: Path | None, program: str, files: dict[str, bytes], as_root: bool) -> Path:
    """A new scratch directory with the program and the files in it, the sandbox user's own."""
    scratch = Path(tempfile.mkdtemp(prefix="creditchat-sandbox-", dir=within))
    for name, data in files.items():
        if Path(name).name != name or name in ("main.py", ".", ".."):
            raise ValueError(f"{name!r} is not a plain file name")
        (scratch / name).write_bytes(data)
    (scratch / "main.py").write_text(program)
    if as_root:
        for path in [scratch, *scratch.iterdir()]:
            os.chown(path, NOBODY, NOBODY)
    return scratch


def _confine(limits: Limits, own_network: bool, as_root: bool) -> None:
    """In the child, before it runs Python: its network, its limits, its user."""
    if own_network:
        flags = CLONE_NEWNET if as_root else CLONE_NEWUSER | CLONE_NEWNET
        if _libc().unshare(flags) != 0:
            os._exit(70)  # refused after the check said it would work: run nothing
    mb = 2**20
    for limit, value in (
        (resource.RLIMIT_CPU, limits.cpu_s),
        (resource.RLIMIT_AS, limits.memory_mb * mb),
        (resource.RLIMIT_FSIZE, limits.file_mb * mb),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NPROC, limits.processes),
    ):
        resource.setrlimit(limit, (value, value))
    if as_root:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: a forked child must not load libraries


def _libc() -> ctypes.CDLL:
    return _LIBC


@functools.cache
def can_unshare() -> bool:
    """Whether a child may have a network namespace of its own here (tried once, in a child)."""
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
    probe = f"import ctypes, sys; sys.exit(ctypes.CDLL(None).unshare({flags}) != 0)"
    return subprocess.run([sys.executable, "-I", "-c", probe], check=False).returncode == 0


@functools.cache
def interpreter() -> str:
    """The Python the sandbox runs: this one, or where the app runs as root (and the code as
    `nobody`), the first one `nobody` can reach; `SandboxUnavailable` when there is none."""
    here = os.path.realpath(sys.executable)
    if os.geteuid() != 0:
        return here
    for candidate in (here, os.path.realpath("/usr/bin/python3")):
        if _reachable_by_others(Path(candidate)):
            return candidate
    raise SandboxUnavailable(
        "The app runs as root and no Python interpreter can be run by the sandbox's user "
        "(nobody): run the app as an ordinary user, or install python3."
    )


def _reachable_by_others(path: Path) -> bool:
    """Whether someone who is neither its owner nor in its group may run `path`."""
    if not path.is_file() or not os.stat(path).st_mode & 0o001:
        return False
    return all(os.stat(parent).st_mode & 0o001 for parent in path.parents)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _signalled(number: int, limits: Limits) -> str:
    if number == signal.SIGXCPU or number == signal.SIGKILL:
        return f"it used more than {limits.cpu_s} s of CPU"
    if number == signal.SIGXFSZ:
        return f"it wrote a file larger than {limits.file_mb} MB"
    return f"it was ended by signal {signal.Signals(number).name}"


def _size(root: Path) -> int:
    total = 0
    for path in root.rglob("*"):
        with contextlib.suppress(OSError):
            total += path.lstat().st_size
    return total
