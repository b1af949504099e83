"""A run's generator on disk: the file a run folder or a published record is evaluated by, its weights (loaded
safely), G rebuilt from the run's config with them, and G exported alone with that config.

``advnets-eval`` and ``python -m advnets.cli.publish`` read and write generators through here; the evaluation
itself (``advnets.evaluation``) takes the generator, never a config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from advnets.errors import UserError
from advnets.jobs.eval_inputs import RUN_CHECKPOINTS, checkpoint_in, recorded_facts, run_config_path
from advnets.jobs.trusted import load_foreign_config
from advnets.nets import Generator
from advnets.store import atomic
from advnets.store.checkpoints import safe_load

__all__ = [
    "RUN_CHECKPOINTS",
    "build_generator",
    "checkpoint_in",
    "export_generator",
    "find_run_config",
    "load_generator_weights",
]


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
        return blob, recorded_facts(path)  # a published generator: its epoch as its record (results.json) says
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


def find_run_config(ckpt: Path, run_config: str | None, user_folders: list[Path] | None = None) -> DictConfig:
    """The composed config of the run that wrote ``ckpt`` (given, beside it, or in ``<run>/.hydra/``), read as data:
    refused if it names a target or resolver beyond advnets' own and the user's (``advnets.jobs.trusted``)."""
    return load_foreign_config(run_config_path(ckpt, run_config), user_folders or [])
