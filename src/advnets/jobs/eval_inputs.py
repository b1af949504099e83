"""What ``advnets-eval`` is given, checked before torch loads: the checkpoint a path names (a run folder, a
published record, a file), that the file is one ``torch.save`` wrote, the run config beside it, and what a
published generator's record says about the epoch it was taken at.

A mistake here is one ``UserError`` line, in the second or so Hydra takes to start, not after torch's import.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

from advnets.errors import UserError

RUN_CHECKPOINTS = ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "generator.pt")
"""What a folder given as ``ckpt_path`` is evaluated by, first found: a run's best or last checkpoint, or a
published record's generator."""

GIVE = "give a run folder, a .ckpt checkpoint or a published generator.pt"

_OPTIONS_WITH_VALUES = frozenset(
    ["--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn", "--cfg", "-c", "--package", "-p"]
    + ["--info", "-i", "--experimental-rerun"]
)
_PLAIN = re.compile(r"[\w./@%+~-]+")


def bare_path_as_ckpt_path(argv: list[str]) -> list[str]:
    """``advnets-eval PATH [overrides]`` as ``ckpt_path=PATH [overrides]``: a word that is no option, no option's
    value and no override (no ``=``, no leading ``~``) is the checkpoint; more than one is a mistake."""
    out: list[str] = []
    bare: list[str] = []
    after_option = False
    for arg in argv:
        if after_option or arg.startswith("-") or "=" in arg or arg.startswith("~"):
            after_option = arg in _OPTIONS_WITH_VALUES
            out.append(arg)
            continue
        bare.append(arg)
        quoted = arg if _PLAIN.fullmatch(arg) else "'" + arg.replace("'", "\\'") + "'"
        out.append(f"ckpt_path={quoted}")
    if len(bare) > 1:
        raise UserError(f"advnets-eval takes one checkpoint or run folder, got {len(bare)}: {', '.join(bare)}")
    if bare and any(a.split("=", 1)[0].lstrip("+") == "ckpt_path" for a in argv if "=" in a):
        raise UserError(f"{bare[0]} and ckpt_path=... both given; give the checkpoint once")
    return out


def checkpoint_in(path: Path) -> Path:
    """``path`` itself (a file that exists), or for a folder (a run folder, a published record) the file
    ``RUN_CHECKPOINTS`` names."""
    if path.is_file():
        return path
    if not path.exists():
        raise UserError(f"ckpt_path={path} does not exist; {GIVE}")
    if path.is_dir():
        for name in RUN_CHECKPOINTS:
            if (path / name).is_file():
                return path / name
        raise UserError(f"ckpt_path={path} is a folder without {', '.join(RUN_CHECKPOINTS)}; {GIVE}")
    raise UserError(f"ckpt_path={path} is not a file or folder; {GIVE}")


def torch_archive(names: list[str]) -> bool:
    """A zip's member list is torch.save's: ``PREFIX/data.pkl`` beside ``PREFIX/version`` (or ``.data/version``)."""
    members = set(names)
    for name in names:
        if name.endswith("/data.pkl") and name.count("/") == 1:
            prefix = name.split("/", 1)[0]
            if f"{prefix}/version" in members or f"{prefix}/.data/version" in members:
                return True
    return False


def check_torch_file(path: Path) -> Path:
    """``path`` if ``torch.save`` wrote it (a zip archive with its ``data.pkl`` and ``version`` entries, or the
    legacy pickle stream); any other file (a zip, an npz, a JSON) is refused without torch."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if torch_archive(names):
                return path
            what = "a zip archive without torch's data.pkl and version entries"
        else:
            with path.open("rb") as handle:
                if handle.read(1) == b"\x80":  # torch.save's legacy format: a pickle stream (loaded safely later)
                    return path
            what = "not a file torch.save writes"
    except (OSError, zipfile.BadZipFile) as err:
        raise UserError(f"cannot read ckpt_path={path}: {err}") from None
    raise UserError(f"ckpt_path={path} is not a checkpoint ({what}); {GIVE}")


def run_config_path(ckpt: Path, run_config: str | None) -> Path:
    """The composed config of the run that wrote ``ckpt``: given, beside it, or in ``<run>/.hydra/``."""
    beside = [ckpt.parent / "config.yaml", ckpt.parent.parent / ".hydra" / "config.yaml"]
    candidates = [Path(run_config)] if run_config else beside
    for path in candidates:
        if path.is_file():
            return path
    raise UserError(f"no run config for {ckpt}: looked for {', '.join(map(str, candidates))}")


def recorded_facts(ckpt: Path) -> dict[str, Any]:
    """What the record beside a published generator (``results.json``) says of the weights: the epoch, the
    updates and the optimizer steps they were taken at; {} when there is no record (or it says nothing of them)."""
    record = ckpt.parent / "results.json"
    try:
        results = json.loads(record.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(results, dict):
        return {}
    facts = {key: results.get(key) for key in ("epoch", "global_step", "updates")}
    return {k: v for k, v in facts.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}
