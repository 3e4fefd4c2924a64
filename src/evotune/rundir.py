"""Run directories: nothing lost, one process at a time.

- `check_out_dir` refuses an output directory that holds a run (unless `overwrite`) or
  anything else; `clear_run_dir` removes the old run once the new one has been built
  from valid input, so bad input never destroys anything.
- `run_lock` holds `RUN_DIR/.lock` while a process writes the run (run, resume, demo,
  aggregate). It is an `fcntl.flock` on that file: the kernel drops it when its process
  ends, however it ends, so a lock left by a killed run never blocks the next one. The
  file says who holds it (pid, host, start), for the message of a refused second
  process, and is removed on a normal exit. It is never run content: `contents` skips it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from evotune.errors import UserError

try:  # POSIX; elsewhere runs are not locked (see run_lock)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
# What makes a directory an evotune run (or a comparison, staged run, aggregate).
RUN_FILES = ("config.yaml", "journal.jsonl", "generations.jsonl", "summary.json", "state", "stages")


def contents(folder: Path) -> list[str]:
    """The names in `folder` (none if it does not exist), the lock file aside."""
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir() if entry.name != LOCK_FILE)


def holds_run(folder: Path) -> bool:
    return any((folder / name).exists() for name in RUN_FILES)


def check_out_dir(folder: Path, overwrite: bool = False) -> None:
    """Refuse an output directory whose contents would be lost: a run (unless
    `overwrite`) or other files (always: --overwrite replaces only a run)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder}: exists and is not a directory")
    names = contents(folder)
    if not names:
        return
    if not holds_run(folder):
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise UserError(
            f"--out {folder}: the directory is not empty ({shown}) and holds no evotune run; "
            "choose another --out (an empty or new directory)"
        )
    if not overwrite:
        raise UserError(
            f"{folder} already holds a run: continue it with `evotune resume {folder}`, "
            "choose another --out, or add --overwrite to replace it"
        )


def check_out_file(path: Path, overwrite: bool = False) -> None:
    """Refuse an output file that exists (unless `overwrite`), or is a directory."""
    if path.is_dir():
        raise UserError(f"--out {path}: is a directory; expected a file name")
    if path.exists() and not overwrite:
        raise UserError(
            f"--out {path}: the file exists; choose another --out or add --overwrite to replace it"
        )


def clear_run_dir(folder: Path) -> None:
    """Remove the old run in `folder` (checked again: still a run, and ours to replace)."""
    check_out_dir(folder, overwrite=True)
    for name in contents(folder):
        entry = folder / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock for the duration; refuse (exit 2) if another process holds
    it. `folder` must exist."""
    path, pid = Path(folder) / LOCK_FILE, os.getpid()
    fd = _lock(path)
    if fd is not None:
        holder = {"pid": pid, "host": socket.gethostname(), "started": _now()}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder) + "\n").encode())
    try:
        yield
    finally:
        if fd is not None:
            _release(fd, path, pid)


def _lock(path: Path) -> int | None:
    """An open descriptor of `path`, flocked; None where locks are not available."""
    if fcntl is None:  # pragma: no cover - no flock: say so rather than pretend
        print(f"warning: {path.parent} is not locked (no fcntl here)", file=sys.stderr)
        return None
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError as err:
            raise UserError(f"{path.parent}: cannot write {path.name} ({err.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(_busy_message(path)) from None
            print(f"warning: {path.parent} is not locked ({err.strerror})", file=sys.stderr)
            return None  # e.g. a file system without locks: run as before
        if _same_file(fd, path):  # not removed by a holder releasing it meanwhile
            return fd
        os.close(fd)


def _release(fd: int, path: Path, pid: int) -> None:
    # Remove the file while still holding the lock: a process that opened it meanwhile
    # sees it gone (_same_file) and locks a new one. A forked child only closes its copy.
    if os.getpid() == pid and _same_file(fd, path):
        path.unlink()
    os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _busy_message(path: Path) -> str:
    folder, holder = path.parent, _read_holder(path)
    if holder.get("pid") is None:
        who = "another evotune process"
    else:
        who = f"evotune process {holder['pid']} on {holder.get('host', '?')}"
        who += f" (since {holder['started']})" if holder.get("started") else ""
    return (
        f"{folder} is in use by {who}: one process at a time writes a run; wait for it "
        f"to end, or stop it and continue with `evotune resume {folder}`"
    )


def _read_holder(path: Path) -> dict[str, Any]:
    for _ in range(20):  # the holder writes its pid just after locking: wait for it
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        if text.endswith("\n"):
            try:
                return dict(json.loads(text))
            except ValueError:
                return {}
        time.sleep(0.01)
    return {}


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
