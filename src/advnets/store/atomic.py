"""Crash-safe writes: a file is either its old complete self or its new complete self, never half written.

Every writer goes to a temporary file in the target's own folder (same file system), is flushed and fsync'ed,
then renamed over the target with ``os.replace`` (atomic on POSIX); the folder is fsync'ed so the rename itself
survives a power cut. A process killed mid-write leaves at most a ``.*.tmp-*`` file, which
``remove_stale_temporaries`` clears when the next job starts in that folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TMP_MARK = ".tmp-"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: Path | str, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_text(path: Path | str, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_json(path: Path | str, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def copy_file(source: Path | str, path: Path | str) -> None:
    """Copy ``source`` to ``path`` (contents and modification time) through a temporary file."""
    with open(source, "rb") as src, atomic_open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copystat(source, path)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries a killed writer left below ``folder``; returns what was removed."""
    removed = []
    if folder.is_dir():
        for tmp in folder.rglob(f".*{TMP_MARK}*"):
            if tmp.is_file() and "wandb" not in tmp.relative_to(folder).parts:
                tmp.unlink()
                removed.append(tmp)
    return removed
