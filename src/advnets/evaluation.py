"""Evaluating a trained generator: the paper's Parzen protocol and the metric suite, written to a folder.

``evaluate_run`` writes ``results.json``, ``samples.npz`` and the pictures; training calls it on its best checkpoint,
``advnets-eval`` (advnets.cli.evaluate) on any checkpoint and ``python -m advnets.cli.publish`` on a finished run.
"""

from __future__ import annotations

import platform
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from advnets.data import ImageDataModule
from advnets.errors import UserError
from advnets.metrics.distances import nearest_neighbours
from advnets.metrics.parzen import parzen_protocol
from advnets.metrics.suite import evaluate_metrics
from advnets.nets import Generator
from advnets.pictures import interpolation_z, save_grid, save_interpolation, save_nearest_neighbours
from advnets.runs import atomic
from advnets.runs.checkpoints import safe_load
from advnets.sampling import generate, noise_from_seed

RUN_CHECKPOINTS = ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "generator.pt")
"""What a folder given as ``ckpt_path`` is evaluated by, first found: a run's best or last checkpoint, or a
published record's generator."""


def checkpoint_in(path: Path) -> Path:
    """``path`` itself, or for a folder (a run folder, a published record) the file ``RUN_CHECKPOINTS`` names."""
    if not path.is_dir():
        return path
    for name in RUN_CHECKPOINTS:
        if (path / name).is_file():
            return path / name
    raise UserError(f"ckpt_path={path} is a folder without {', '.join(RUN_CHECKPOINTS)}; give a run folder or a file")


def load_generator_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """G's state_dict from a Lightning checkpoint (``generator.*`` keys) or a plain state_dict file."""
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    blob = safe_load(path)  # weights_only=True: a file that would run code is refused
    if isinstance(blob, dict) and "state_dict" in blob:
        state = {k[len("generator.") :]: v for k, v in blob["state_dict"].items() if k.startswith("generator.")}
        epoch = blob.get("epoch")  # Lightning stores the 0-indexed epoch it saved in: report epochs completed
        meta = {"epoch": None if epoch is None else epoch + 1, "global_step": blob.get("global_step")}
        updates = blob.get("advnets_updates")  # the game's count of updates done
        return state, {**meta, "updates": None if updates is None else int(updates)}
    if isinstance(blob, dict) and all(isinstance(v, torch.Tensor) for v in blob.values()):
        return blob, {}
    raise UserError(f"{path} holds neither a Lightning checkpoint nor a generator state_dict")


def build_generator(model_cfg: DictConfig, state: dict[str, torch.Tensor], data_dim: int) -> Generator:
    """The run's generator with the given weights; a checkpoint for another data shape is a clear error."""
    out = state.get("out.weight")
    if out is not None and out.shape[0] != data_dim:
        raise UserError(f"checkpoint generates {out.shape[0]}-d images but the dataset has {data_dim}-d images")
    generator: Generator = instantiate(model_cfg.generator)
    try:
        generator.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(f"checkpoint does not fit model.generator: {str(err).splitlines()[0]}") from None
    return generator


def evaluate_run(
    generator: Generator,
    datamodule: ImageDataModule,
    noise: str,
    eval_cfg: DictConfig,
    out_dir: Path,
    meta: dict[str, Any],
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Run the protocol, write ``results.json``, ``samples.npz``, the sample grid, Figures 2 and 3; return results."""
    splits = datamodule.load()
    generator = generator.to(device)
    z = noise_from_seed(int(eval_cfg.n_samples), generator.noise_dim, noise, int(eval_cfg.seed), device)
    samples = generate(generator, z)
    if not torch.isfinite(samples).all():
        raise UserError("the generator's samples contain NaN/inf (a diverged run); nothing to evaluate")
    start = time.perf_counter()
    result = parzen_protocol(
        samples,
        splits.valid[: int(eval_cfg.n_valid)].to(device),
        splits.test.to(device),
        grid=list(eval_cfg.grid),
        sigma=eval_cfg.sigma,
        precision=eval_cfg.precision,
    )
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    # the float64 Parzen pass found each test image's nearest sample exactly: the suite reuses it
    nearest = result.nearest_sq_dist if eval_cfg.precision == "float64" else None
    beyond = evaluate_metrics(samples, splits.train, splits.test.to(device), datamodule.name, eval_cfg, nearest)
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
        "grid": list(eval_cfg.grid),
        "precision": eval_cfg.precision,
        "dataset": datamodule.name,
        **({"fold": datamodule.fold} if hasattr(datamodule, "fold") else {}),  # TFD: Table 1 averages the folds
        "noise": noise,
        "seed": int(eval_cfg.seed),
        "eval_seconds": round(seconds, 3),
        **beyond,
        "metrics_seconds": round(metrics_seconds, 3),
        "eval": OmegaConf.to_container(eval_cfg, resolve=True),
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
    save_figure3(generator, noise, eval_cfg, splits.image_shape, out_dir / "interpolation.png", device)
    return results


def log_results(loggers: list[Any], results: dict[str, Any], out_dir: Path, step: int) -> dict[str, float]:
    """An evaluation's numbers to the loggers at ``step`` (the index of the checkpoint's last update, the unit of
    every logged value): ``test/`` Parzen and metrics, ``test_real_vs_real/`` floors (real test images vs real
    training images: never mistaken for the model's own values), and (W&B) the sample grid and Figure 3.
    Returns the logged numbers."""
    summary = {f"test/{k}": float(results[k]) for k in ("parzen_ll", "parzen_se", "sigma", "n_samples")}
    summary.update({f"test/{k}": float(v) for k, v in results.get("metrics", {}).items()})  # beyond Parzen
    summary.update({f"test_real_vs_real/{k}": float(v) for k, v in results.get("metrics_reference", {}).items()})
    pictures = {"test/samples": out_dir / "samples_grid.png", "test/interpolation": out_dir / "interpolation.png"}
    for logger in loggers:
        logger.log_metrics(summary, step=step)
        if hasattr(logger, "log_image"):  # W&B
            for key, path in pictures.items():
                if path.is_file():
                    logger.log_image(key, [str(path)], step=step)
    return summary


def save_figure3(
    generator: Generator,
    noise: str,
    eval_cfg: DictConfig,
    shape: tuple[int, int, int],
    path: Path,
    device: torch.device | str,
) -> Path | None:
    """Figure 3: G along straight lines between random pairs of z (the pairs seeded by ``eval.seed``).

    An eval config without ``interpolation_rows`` (a run recorded before Figure 3 existed) skips it."""
    if not eval_cfg.get("interpolation_rows"):
        return None
    rows, steps = int(eval_cfg.interpolation_rows), int(eval_cfg.interpolation_steps)
    # a stream apart from the samples', drawn on the CPU: the same figure on every device
    ends = noise_from_seed(2 * rows, generator.noise_dim, noise, int(eval_cfg.seed) + 1, device)
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
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def export_generator(generator: Generator, run_cfg: DictConfig, out_dir: Path) -> Path:
    """The generator alone (a plain state_dict) and the run's config: enough for advnets-eval to re-derive."""
    target = out_dir / "generator.pt"
    if target.exists():
        raise UserError(f"{target} exists; remove it or export elsewhere (nothing was overwritten)")
    out_dir.mkdir(parents=True, exist_ok=True)
    keep = {key: run_cfg[key] for key in ("seed", "dataset", "model", "game", "optimizer") if key in run_cfg}
    # left unresolved (${oc.env:ADVNETS_DATA_DIR,data}): the evaluating machine's data folder, not this one's
    keep["paths"] = {"data_dir": OmegaConf.to_container(run_cfg.paths, resolve=False)["data_dir"]}
    keep["name"] = OmegaConf.select(run_cfg, "name", throw_on_resolution_failure=False) or "exported"
    atomic.write_text(out_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(keep)))
    with atomic.atomic_open(target, "wb") as handle:
        torch.save({k: v.detach().cpu().clone() for k, v in generator.state_dict().items()}, handle)
    return target


def find_run_config(ckpt: Path, run_config: str | None) -> DictConfig:
    """The composed config of the run that wrote ``ckpt``: given, beside it, or in ``<run>/.hydra/``."""
    candidates = (
        [Path(run_config)]
        if run_config
        else [
            ckpt.parent / "config.yaml",
            ckpt.parent.parent / ".hydra" / "config.yaml",
        ]
    )
    for path in candidates:
        if path.is_file():
            return OmegaConf.load(path)
    raise UserError(f"no run config for {ckpt}: looked for {', '.join(map(str, candidates))}")
