"""The sandbox for a task's Python code: it runs, and every way out or over is refused or cut."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.sandbox import Limits, can_unshare, run_python


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A directory the sandbox's user can reach (pytest's own are its owner's only)."""
    made = Path(tempfile.mkdtemp(prefix="creditchat-test-"))
    made.chmod(0o711)
    yield made
    shutil.rmtree(made, ignore_errors=True)


QUICK = Limits(cpu_s=2, wall_s=5, memory_mb=256, output_bytes=4096, file_mb=1, disk_mb=4)


async def test_code_runs_with_its_files_and_says_what_it_printed(reachable: Path) -> None:
    code = "import csv, statistics\nrows = list(csv.DictReader(open('data.csv')))\n" \
        "print(statistics.mean(float(r['x']) for r in rows))"  # fmt: skip
    done = await run_python(code, {"data.csv": b"x\n1\n2\n3\n6\n"}, QUICK, reachable)
    assert done.ok and done.stdout == "3.0\n" and done.stderr == "", done
    assert os.listdir(reachable) == []  # the scratch directory is gone


async def test_an_error_is_its_exit_status_and_traceback(tmp_path: Path) -> None:
    done = await run_python("raise ValueError('no')")
    assert done.exit_code == 1 and done.stopped is None
    assert "ValueError: no" in done.stderr


async def test_a_busy_loop_is_stopped_at_its_cpu_limit(tmp_path: Path) -> None:
    done = await run_python("while True: pass", limits=QUICK)
    assert done.stopped == "it used more than 2 s of CPU"
    assert done.seconds < 5


async def test_sleeping_forever_is_stopped_at_the_wall_clock(tmp_path: Path) -> None:
    done = await run_python("import time\ntime.sleep(3600)", limits=QUICK)
    assert done.stopped == "it ran longer than 5 s"


async def test_printing_gigabytes_is_cut_at_the_output_limit(tmp_path: Path) -> None:
    done = await run_python("while True: print('x' * 10000)", limits=QUICK)
    assert done.stopped == "it wrote more than 4,096 bytes"
    assert len(done.stdout) <= 4096


async def test_memory_is_limited(tmp_path: Path) -> None:
    done = await run_python("b = bytearray(1024 * 1024 * 1024)\nprint('got it')", limits=QUICK)
    assert not done.ok and "MemoryError" in done.stderr and "got it" not in done.stdout


async def test_a_large_file_and_a_full_disk_are_cut_off(reachable: Path) -> None:
    big = await run_python("open('big', 'wb').write(b'0' * 2 * 1024 * 1024)", limits=QUICK)
    assert big.stopped == "it wrote a file larger than 1 MB" or "File too large" in big.stderr
    many = "n = 0\nwhile True:\n    open(f'f{n}', 'wb').write(b'0' * 900_000)\n    n += 1"
    full = await run_python(many, limits=QUICK, within=reachable)
    assert full.stopped == "it wrote more than 4 MB of files"
    assert os.listdir(reachable) == []


async def test_there_is_no_network(tmp_path: Path) -> None:
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('127.0.0.1', 5432), timeout=2)\n"
        "    print('connected')\n"
        "except OSError as e:\n"
        "    print('refused', type(e).__name__)\n"
    )
    done = await run_python(code, limits=QUICK)
    assert done.stdout.startswith("refused"), done
    assert done.network == ("namespace" if can_unshare() else "python")


async def test_no_secret_of_the_app_reaches_the_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_TEST_SECRET", "do-not-leak")
    done = await run_python("import os\nprint(sorted(os.environ))", limits=QUICK)
    assert "SANDBOX_TEST_SECRET" not in done.stdout and "DATA_DIR" not in done.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the app runs as this user: its files are its own")
async def test_as_root_the_code_runs_as_nobody_and_cannot_read_private_files(
    tmp_path: Path,
) -> None:
    secret = tmp_path.parent / "ledger-signing.key"
    secret.write_text("private")
    secret.chmod(0o600)
    code = f"import os\nprint(os.getuid())\nprint(open({str(secret)!r}).read())"
    done = await run_python(code, limits=QUICK)
    assert done.stdout.splitlines()[0] == "65534"
    assert "PermissionError" in done.stderr and "private" not in done.stdout


async def test_a_fork_bomb_does_not_take_the_machine(tmp_path: Path) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    done = await run_python(code, limits=QUICK)
    assert done.stopped is not None  # cut by its CPU or wall-clock limit, every child with it


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/cron.d/x", "main.py", "sub/dir.txt"])
async def test_a_file_name_that_is_not_plain_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        await run_python("print(1)", {name: b"x"})
