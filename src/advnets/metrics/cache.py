"""A content-addressed cache for what the metric suite derives from real images alone.

The test set's classifier features, logits and k-NN radii, and the real-vs-real floor, depend only on the images,
the classifier (its md5) and the suite's settings, never on a generator: every evaluation after the first reuses
them. Entries are named by a digest of everything that determines them (the images' bytes included), so a changed
input is a miss, never a stale hit. Kept in this process and on disk: ``$ADVNETS_CACHE_DIR``, else
``$XDG_CACHE_HOME/advnets``, else ``~/.cache/advnets``; ``ADVNETS_CACHE_DIR=off`` keeps it in memory only.
Files are written atomically and read with ``weights_only=True``; an unreadable entry is recomputed.

The same folder's ``classifiers/`` holds the domain classifiers ``advnets-classifier`` trains for datasets advnets
does not ship one for (:func:`classifier_dir`); the classifier lookup reads it after the package's own.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advnets.store import atomic

VERSION = 1
"""Part of every key: bump it when the code behind a cached value changes (features, radii, a metric)."""
_MEMORY: OrderedDict[str, Any] = OrderedDict()
_MEMORY_ENTRIES = 8


def cache_dir() -> Path | None:
    """The on-disk folder, or None when the disk cache is off."""
    setting = os.environ.get("ADVNETS_CACHE_DIR")
    if setting is not None:
        return None if setting.strip().lower() in ("", "off") else Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "advnets"


def classifier_dir() -> Path | None:
    """Where ``advnets-classifier`` writes a user's domain classifiers: ``<cache>/classifiers``; None when the disk
    cache is off."""
    folder = cache_dir()
    return folder / "classifiers" if folder is not None else None


def fingerprint(t: Tensor) -> str:
    """A digest of a tensor's dtype, shape and bytes."""
    data = t.detach().cpu().contiguous()
    digest = hashlib.sha1(f"{data.dtype}{tuple(data.shape)}".encode())
    digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def key(kind: str, **parts: Any) -> str:
    """The entry name for ``kind`` determined by ``parts`` (JSON-serialisable) and :data:`VERSION`."""
    blob = json.dumps({"kind": kind, "version": VERSION, **parts}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha1(blob.encode()).hexdigest()[:24]}"


def cached(name: str, compute: Callable[[], Any], suffix: str) -> Any:
    """The value stored under ``name``, or ``compute()`` stored there; ``suffix`` ``.pt`` (tensors) or ``.json``."""
    if name in _MEMORY:
        _MEMORY.move_to_end(name)
        return _MEMORY[name]
    folder = cache_dir()
    path = folder / f"{name}{suffix}" if folder is not None else None
    value = _read(path) if path is not None and path.is_file() else None
    if value is None:
        value = compute()
        if path is not None:
            _write(path, value)
    _MEMORY[name] = value
    while len(_MEMORY) > _MEMORY_ENTRIES:
        _MEMORY.popitem(last=False)
    return value


def clear_memory() -> None:
    """Forget the in-process entries (the disk stays)."""
    _MEMORY.clear()


def _read(path: Path) -> Any:
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a damaged or foreign file: recompute and replace it
        return None


def _write(path: Path, value: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json":
            atomic.write_json(path, value)
        else:
            with atomic.atomic_open(path, "wb") as handle:
                torch.save(value, handle)
    except OSError:  # a read-only or full disk only costs the next evaluation the same work again
        pass
