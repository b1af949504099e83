"""Where a result came from: the source commit of the code that computed it, and the command that ran it."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def source_commit(where: Path = PACKAGE) -> str | None:
    """The git commit of the checkout the package runs from (``+dirty`` when its tracked files differ from that
    commit), or None for an installed package outside any git checkout."""
    try:
        top = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if top.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return top.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def command_line(entry_point: str, overrides: Sequence[str]) -> str:
    """The command a run's overrides were given to, e.g. ``advnets-train experiment=paper_mnist seed=1``."""
    return " ".join([entry_point, *overrides])


def cpu_name() -> str:
    """The CPU's model name and the kernels torch dispatches to on it, e.g. ``Intel(R) Xeon(R) Processor, torch
    AVX512``: a GAN's curve is reproduced digit for digit only on the same kind of CPU (float rounding differs)."""
    import platform

    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, torch {torch.backends.cpu.get_cpu_capability()}"
