"""Atomic files: checkpoints (one .npz of named arrays + JSON metadata), JSON, text.

Every write goes to a temporary file in the same folder, is fsynced, then replaces the
target with `os.replace`, so a reader (or a resumed run) sees the old file or the new
one, never half of one. Nothing is pickled: arrays load with `allow_pickle=False`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from evotune.errors import UserError

META_KEY = "__meta__"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, default_file_mode())  # mkstemp makes 0600; use what open() would
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:  # no space, read-only: name the file the user would look for
        Path(tmp).unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror, str(path)) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def default_file_mode() -> int:
    """The mode open() gives a new file (0644 under the usual umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders can't be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=True) + "\n")


def save_checkpoint(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """One file: `arrays` by name plus `meta` (JSON) under a reserved key."""
    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY!r} is reserved")
    buffer = io.BytesIO()
    np.savez(buffer, **{META_KEY: np.array(json.dumps(meta))}, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The checkpoint's (meta, arrays); a damaged file (truncated, overwritten) is a
    UserError that says how to recover: the journal rebuilds the run without it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(str(arrays.pop(META_KEY)))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        run_dir = path.parent.parent
        raise UserError(
            f"{path} is damaged ({type(err).__name__}: {err}). To recover, move it away "
            f"(e.g. `mv {path} {path}.damaged`) and run `evotune resume {run_dir}` again: "
            "the run is rebuilt from journal.jsonl without evaluating again; or start a "
            "new run"
        ) from None
    return meta, arrays
