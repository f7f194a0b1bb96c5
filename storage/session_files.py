"""Where Chainlit keeps each session's files (uploads, the content of elements): a folder of this
process's own under the data directory.

Chainlit keeps them in `./.files` of the working directory and deletes that whole folder when its
process stops. Two app processes started from one directory (replicas on one host, a restart that
overlaps the old process) shared it, and the first to stop deleted the other's files mid-session
(its badge and files failed to send from then on). Each process now has `session-files/<host>-<pid>`,
and removes only its own at shutdown; folders of processes of this host that no longer run are
removed at start.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import chainlit.config
import chainlit.server


def use_own_folder(data_dir: Path) -> Path:
    """Point Chainlit at this process's own folder (before any session starts)."""
    root = data_dir / "session-files"
    root.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    for folder in root.glob(f"{host}-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    mine = root / f"{host}-{os.getpid()}"
    mine.mkdir(exist_ok=True)
    # Both names Chainlit reads: the session's folder, and the one its shutdown deletes.
    chainlit.config.FILES_DIRECTORY = mine
    chainlit.server.FILES_DIRECTORY = mine
    return mine


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        return True
    return True
