"""Checkpoint files: loaded safely (``weights_only=True``), written atomically, checked before a resume.

A ``.ckpt`` or ``.pt`` from someone else must never run code when it is opened. Every load goes through
``safe_load``: ``torch.load(weights_only=True)``, whose unpickler builds only tensors, numbers, strings and plain
containers, plus the classes in ``ALLOWLIST``. advnets' own checkpoints need none: they hold the game's
``state_dict``, the optimizers' states (tensors and numbers), Lightning's loop and ``ModelCheckpoint`` states
(numbers, strings, tensors) and no hyper-parameters or config objects. Anything else is refused with one line.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from advnets.errors import UserError
from advnets.store import atomic

ALLOWLIST: tuple[Any, ...] = ()
"""Classes (beyond torch's own safe set) a checkpoint may hold. Keep it empty unless a real need appears."""


class UnsafeCheckpoint(UserError):
    """A file that would build Python objects beyond weights when loaded: refused, never skipped silently."""


def safe_load(path: Path | str, map_location: Any = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True``; a file holding other Python objects is a one-line UserError."""
    path = Path(path)
    if path.is_file() and not is_torch_file(path):
        raise UserError(f"{path} is not a checkpoint (not a file torch.save writes); give a .ckpt or .pt file")
    try:
        with torch.serialization.safe_globals(list(ALLOWLIST)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle.UnpicklingError for code/objects, many types for a broken file
        message = str(err)
        found = re.search(r"Unsupported (?:global|operand)[^\n.]*", message)
        if found or "Weights only load failed" in message:
            what = found.group(0) if found else message.splitlines()[0]
            raise UnsafeCheckpoint(
                f"refused to load {path}: it holds Python objects, not just weights ({what}); "
                "advnets loads only tensors and plain containers (torch.load weights_only=True)"
            ) from None
        first = message.splitlines()[0] if message else type(err).__name__
        raise UserError(f"cannot read checkpoint {path}: {first}") from None


def is_torch_file(path: Path) -> bool:
    """Written by ``torch.save``: a zip archive (torch >= 1.6) or a legacy pickle stream (starts with PROTO)."""
    if zipfile.is_zipfile(path):
        return True
    with path.open("rb") as handle:
        return handle.read(1) == b"\x80"


def check_complete(path: Path) -> Path:
    """A checkpoint that exists and is a complete torch zip archive (a truncated file is rejected)."""
    if not path.is_file():
        raise UserError(f"ckpt_path={path} does not exist; give the path of a .ckpt file")
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.testzip() is not None:
                raise zipfile.BadZipFile("a member fails its CRC check")
    except (zipfile.BadZipFile, OSError) as err:
        raise UserError(f"ckpt_path={path} is truncated or not a checkpoint ({err})") from None
    return path


def check_resumable(path: Path) -> Path:
    """Complete and safe to load: what a resume may hand to Lightning (which loads it again, also safely)."""
    check_complete(path)
    state = safe_load(path)
    if not (isinstance(state, dict) and "state_dict" in state and "loops" in state):
        raise UserError(f"ckpt_path={path} is not a Lightning training checkpoint (no state_dict/loops to resume)")
    return path


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, with atomic fsync'ed writes and ``weights_only=True`` loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("SafeCheckpointIO takes no storage_options")
        with atomic.atomic_open(Path(path), "wb") as handle:
            torch.save(checkpoint, handle)

    def load_checkpoint(
        self, path: Any, map_location: Callable | Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return safe_load(path, map_location=map_location or "cpu")
