"""An OS file lock held while a job runs, so other processes can tell a job that is running
in another Verso from one left "running" by a crash: the OS drops the lock when the holder
exits, however it exits.

POSIX ``flock`` locks belong to the open file, not the process, so a second open of the
same file in the same process also sees the lock as taken; Windows locks the first byte.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


class JobLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another holder has it."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(fd):
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the lock
            self._fd = None


def held_elsewhere(path: Path) -> bool:
    """Whether another open of ``path`` holds its lock (checked by trying to take it)."""
    if not path.exists():
        return False
    probe = JobLock(path)
    try:
        if not probe.acquire():
            return True
    except OSError:
        return False
    probe.release()
    return False


if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
