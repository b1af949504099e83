"""What a finished job says at the end: where its results are and what it scored, beside the real-vs-real floor."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

PAPER_SAMPLES = 10_000  # the paper's protocol draws 10,000 samples


def _number(value: Any, digits: int = 3) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"


def summary_lines(
    run_dir: Path, metrics: dict[str, Any], results: dict[str, Any] | None, what: str = "run"
) -> list[str]:
    """A few short lines: the folder (of a ``run``, or an ``evaluation``), the headline numbers (each beside its
    real-vs-real floor), the files."""
    lines = [f"advnets: {what} {run_dir}"]
    epochs = metrics.get("run/epochs")
    if metrics.get("diverged_at_epoch") is not None:
        lines.append(f"  diverged in epoch {int(metrics['diverged_at_epoch'])}: nothing to evaluate")
    elif metrics.get("pruned_at_epoch") is not None:
        lines.append(
            f"  pruned at epoch {int(metrics['pruned_at_epoch'])} by the study's pruner (a pruned trial is not "
            f"evaluated); validation Parzen LL at that epoch {_number(metrics.get('val/parzen_ll'), 4)} nats, "
            f"the objective at its best checkpoint {_number(metrics.get('objective_score'), 4)} (the trial's value)"
        )
    elif results is None:
        val = metrics.get("val/parzen_ll")
        lines.append(
            f"  trained {int(epochs) if epochs is not None else '?'} epochs; validation Parzen LL {_number(val, 4)} "
            "nats (no evaluation after training: evaluate=false)"
        )
    else:
        paper = results.get("n_samples") == PAPER_SAMPLES
        protocol = "the paper's protocol" if paper else "fewer samples than the paper"
        lines.append(
            f"  test Parzen log-likelihood {results['parzen_ll']:.1f} ± {results['parzen_se']:.1f} nats "
            f"(epoch {results.get('epoch', '?')}, {results.get('n_samples')} samples: {protocol}, "
            f"sigma {results['sigma']:.4g})"
        )
        beyond = results.get("metrics") or {}
        floors = results.get("metrics_reference") or {}
        if beyond:
            shown = [  # in results.json's order: eval.metrics, then the metrics of one's own
                f"{name} {_number(value)}" + (f" ({_number(floors[name])})" if name in floors else "")
                for name, value in beyond.items()
            ]
            lines.append("  " + ", ".join(shown[:5]))
            if shown[5:]:
                lines.append("  " + ", ".join(shown[5:]))
            if floors:
                lines.append("  (in brackets: real test images vs real training images, the floor for each metric)")
    files = [name for name in ("results.json", "metrics.json", "samples.npz") if (run_dir / name).is_file()]
    pictures = [p.name for p in sorted(run_dir.glob("*.png"))]
    lines.append(f"  files: {', '.join(files + pictures)} in {run_dir}")
    return lines
