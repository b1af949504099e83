"""Evaluating a trained generator: the paper's Parzen protocol and the metric suite, written to a folder.

``evaluate_run`` writes ``results.json``, ``samples.npz`` and the pictures; training calls it on its best checkpoint,
``advnets-eval`` (advnets.cli.evaluate) on any checkpoint and ``python -m advnets.cli.publish`` on a finished run.
How is one typed object, ``EvalSettings``, built from the config's ``eval:`` by those drivers and passed down.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from advnets.data import ImageDataModule
from advnets.errors import UserError
from advnets.metrics.distances import nearest_neighbours
from advnets.metrics.parzen import parzen_protocol
from advnets.metrics.registry import MetricSpec, check_names, own_spec
from advnets.metrics.suite import SuiteOptions, SuiteSettings, evaluate_metrics
from advnets.nets import Generator
from advnets.pictures import interpolation_z, save_grid, save_interpolation, save_nearest_neighbours
from advnets.sampling import Noise, generate, noise_from_seed
from advnets.store import atomic


@dataclass(frozen=True)
class EvalSettings:
    """How a generator is evaluated: the config's ``eval:`` (``conf/eval/paper.yaml`` says what each is), typed.

    Built once by the driver (``from_dict`` of the resolved ``eval:`` group) and recorded as it was given in every
    ``results.json`` (``record``). A setting the given values leave out takes its default here: no metrics
    beyond Parzen, none of one's own, no Figure 3, the best checkpoint."""

    n_samples: int
    n_valid: int
    grid: tuple[float, ...]
    sigma: float | None
    seed: int
    precision: Literal["float32", "float64"]
    checkpoint: Literal["best", "last"] = "best"
    interpolation_rows: int = 0
    interpolation_steps: int = 10
    metrics: tuple[str, ...] = ()
    reference: bool = False
    suite: SuiteOptions = field(default_factory=SuiteOptions)
    extra_metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> its _target_ node

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> EvalSettings:
        """From plain values (``OmegaConf.to_container(cfg.eval, resolve=True)``); an unknown or missing setting is
        one UserError line."""
        known = {f.name: f for f in fields(cls)}
        unknown = [k for k in values if k not in known]
        if unknown:
            raise UserError(f"eval.{unknown[0]}: not an evaluation setting; known: {', '.join(known)}")
        required = [n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING]
        missing = [n for n in required if n not in values]
        if missing:
            raise UserError(f"eval.{missing[0]} is missing; an evaluation needs {', '.join(required)}")
        given = dict(values)
        for name in ("grid", "metrics"):
            if name in given:
                given[name] = tuple(given[name])
        if "suite" in given:
            suite = dict(given["suite"] or {})
            options = [f.name for f in fields(SuiteOptions)]
            bad = [k for k in suite if k not in options]
            if bad:
                raise UserError(f"eval.suite.{bad[0]}: not a suite setting; known: {', '.join(options)}")
            given["suite"] = SuiteOptions(**suite)
        if "extra_metrics" in given:
            given["extra_metrics"] = _own_metric_nodes(given["extra_metrics"])
        return cls(**given)

    def own_metrics(self) -> dict[str, MetricSpec]:
        """The metrics of one's own (``extra_metrics``), built from their ``_target_`` and read into registry
        entries (``registry.own_spec``); a target that fails to build, or builds no metric, is one UserError line.
        Only what the user's own config names gets here: a config that came with a checkpoint or run folder has
        its targets checked first (``advnets.jobs.trusted``)."""
        from hydra.errors import InstantiationException
        from hydra.utils import instantiate

        specs = {}
        for name, node in self.extra_metrics.items():
            try:
                built = instantiate(dict(node))
            except InstantiationException as err:
                cause = err.__cause__ or err
                first = (str(cause).splitlines() or [type(cause).__name__])[0]
                raise UserError(f"eval.extra_metrics.{name}: cannot build {node['_target_']}: {first}") from None
            specs[name] = own_spec(name, built, str(node["_target_"]))
        return specs

    def check_metrics(self) -> dict[str, MetricSpec]:
        """``metrics`` registered, ``extra_metrics`` built into metrics (``own_metrics``): every mistake before any
        work. Returns the metrics of one's own."""
        check_names(self.metrics)
        return self.own_metrics()

    def record(self) -> dict[str, Any]:
        """The settings as ``results.json`` records them under ``eval`` (lists, the suite's settings nested)."""
        out = asdict(self)
        out["grid"], out["metrics"] = list(self.grid), list(self.metrics)
        out["extra_metrics"] = {name: dict(node) for name, node in self.extra_metrics.items()}
        return out

    def suite_settings(self) -> SuiteSettings:
        """The metric suite's settings: ``suite``, with the samples' seed (KID subsets and IS splits use it)."""
        return SuiteSettings(**asdict(self.suite), seed=int(self.seed))


def _own_metric_nodes(given: Any) -> dict[str, dict[str, Any]]:
    """``eval.extra_metrics`` as a mapping of names to ``_target_`` nodes (``null`` switches one off)."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise UserError(f"eval.extra_metrics={given!r}; allowed: a mapping of metric names to nodes with _target_")
    nodes = {}
    for name, node in given.items():
        if node is None:
            continue
        if not (isinstance(node, Mapping) and isinstance(node.get("_target_"), str)):
            raise UserError(f"eval.extra_metrics.{name}={node!r}; allowed: a node with _target_, or null")
        nodes[str(name)] = dict(node)
    return nodes


class DivergedSamples(UserError):
    """The generator's samples are not finite: a diverged run, which has nothing to evaluate."""


def evaluate_run(
    generator: Generator,
    datamodule: ImageDataModule,
    noise: Noise,
    settings: EvalSettings,
    out_dir: Path,
    meta: dict[str, Any],
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Run the protocol, write ``results.json``, ``samples.npz``, the sample grid, Figures 2 and 3; return results."""
    splits = datamodule.load()
    generator = generator.to(device)
    z = noise_from_seed(int(settings.n_samples), generator.noise_dim, noise, int(settings.seed), device)
    samples = generate(generator, z)
    if not torch.isfinite(samples).all():
        raise DivergedSamples("the generator's samples contain NaN/inf (a diverged run); nothing to evaluate")
    start = time.perf_counter()
    result = parzen_protocol(
        samples,
        splits.valid[: int(settings.n_valid)].to(device),
        splits.test.to(device),
        grid=list(settings.grid),
        sigma=settings.sigma,
        precision=settings.precision,
    )
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    # the float64 Parzen pass found each test image's nearest sample exactly: the suite reuses it
    nearest = result.nearest_sq_dist if settings.precision == "float64" else None
    beyond = evaluate_metrics(
        samples,
        splits.train,
        splits.test.to(device),
        datamodule.name,
        settings.metrics,
        settings.suite_settings(),
        settings.reference,
        nearest,
        settings.own_metrics(),
    )
    metrics_seconds = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {
        "parzen_ll": result.log_likelihood,
        "parzen_se": result.standard_error,
        "sigma": result.sigma,
        "n_samples": result.n_samples,
        "n_valid": result.n_valid,
        "n_test": result.n_test,
        "mean_ll_per_sigma": result.mean_ll_per_sigma,
        "grid": list(settings.grid),
        "precision": settings.precision,
        **datamodule.record(),  # its name, and what else tells its numbers apart (TFD: the fold)
        "noise": noise,
        "seed": int(settings.seed),
        "eval_seconds": round(seconds, 3),
        **beyond,
        "metrics_seconds": round(metrics_seconds, 3),
        "eval": settings.record(),
        "hardware": hardware(device),
        "advnets_version": version("advnets"),
        **meta,
    }
    with atomic.atomic_open(out_dir / "samples.npz", "wb") as handle:
        np.savez_compressed(handle, samples=samples.cpu().numpy(), z=z.cpu().numpy())
    atomic.write_json(out_dir / "results.json", results)  # last: a results.json always has its samples.npz
    save_grid(samples[:100], splits.image_shape, out_dir / "samples_grid.png")
    idx, _ = nearest_neighbours(samples[:30], splits.train.to(device))
    save_nearest_neighbours(samples[:30], splits.train[idx.cpu()], splits.image_shape, out_dir / "nearest.png")
    save_figure3(generator, noise, settings, splits.image_shape, out_dir / "interpolation.png", device)
    return results


def log_results(loggers: list[Any], results: dict[str, Any], out_dir: Path, step: int) -> dict[str, float]:
    """An evaluation's numbers to the loggers at ``step`` (the index of the checkpoint's last update, the unit of
    every logged value): ``test/`` Parzen and metrics, ``test_real_vs_real/`` floors (real test images vs real
    training images: never mistaken for the model's own values), and the sample grid and Figure 3 (W&B, TensorBoard,
    MLflow). Returns the logged numbers."""
    from advnets.store.loggers import log_picture

    summary = {f"test/{k}": float(results[k]) for k in ("parzen_ll", "parzen_se", "sigma", "n_samples")}
    summary.update({f"test/{k}": float(v) for k, v in results.get("metrics", {}).items()})  # beyond Parzen
    summary.update({f"test_real_vs_real/{k}": float(v) for k, v in results.get("metrics_reference", {}).items()})
    pictures = {"test/samples": out_dir / "samples_grid.png", "test/interpolation": out_dir / "interpolation.png"}
    for logger in loggers:
        logger.log_metrics(summary, step=step)
    for key, path in pictures.items():
        if path.is_file():
            log_picture(loggers, key, path, step)  # W&B and TensorBoard images, MLflow artifacts
    return summary


def save_figure3(
    generator: Generator,
    noise: Noise,
    settings: EvalSettings,
    shape: tuple[int, int, int],
    path: Path,
    device: torch.device | str,
) -> Path | None:
    """Figure 3: G along straight lines between random pairs of z (the pairs seeded by ``eval.seed``); none with
    ``interpolation_rows`` 0."""
    if not settings.interpolation_rows:
        return None
    rows, steps = int(settings.interpolation_rows), int(settings.interpolation_steps)
    # a stream apart from the samples', drawn on the CPU: the same figure on every device
    ends = noise_from_seed(2 * rows, generator.noise_dim, noise, int(settings.seed) + 1, device)
    return save_interpolation(generate(generator, interpolation_z(ends[:rows], ends[rows:], steps)), shape, path, steps)


def eval_device(name: str) -> torch.device:
    """``auto``: cuda when available, else cpu; otherwise the named device, which must exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device={name!r}; allowed: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device={name!r} but this machine has no CUDA device; allowed: auto, cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"device={name!r}; allowed: auto, cpu, cuda, cuda:N")
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and device.index is not None and device.index >= count:
        allowed = "cuda:0" if count == 1 else f"cuda:0 .. cuda:{count - 1}"
        raise UserError(f"device={name!r} but this machine has {count} CUDA device(s); allowed: auto, cpu, {allowed}")
    return device


def hardware(device: torch.device | str) -> str:
    """A short description of where the numbers were computed."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    from advnets.store.provenance import cpu_name

    return f"{cpu_name()}, {torch.get_num_threads()} threads"
