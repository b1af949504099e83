"""``python -m advnets.metrics.figures RUN_DIR``: what the metrics beyond Parzen see, as one picture.

Left: the classifier's class shares of the samples beside the test set's. Right: for each test image, the squared
pixel distance to its nearest sample and to its nearest of as many real training images (the real-vs-real
reference), as histograms. Reads ``RUN_DIR/samples.npz`` and ``results.json`` (written by advnets-eval); writes
``RUN_DIR/beyond_parzen.png`` (or ``--out``).

The real images are the evaluated run's own dataset's: its data module is built from the run's config (the folder's
``config.yaml`` or ``.hydra/config.yaml`` when it names a dataset, else the config of the checkpoint
``results.json`` names), which is data: it builds only classes advnets' own configs name or the user's own
(``--config-dir DIR``, ``ADVNETS_CONF_DIR``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from advnets.data import ImageDataModule
from advnets.errors import UserError, fail
from advnets.logs import get_logger
from advnets.metrics.distances import nearest_neighbours
from advnets.metrics.features import load_classifier
from advnets.metrics.suite import extract

log = get_logger(__name__)


def class_shares(images: torch.Tensor, dataset: str) -> np.ndarray:
    net, card = load_classifier(dataset)
    labels = extract(images, net, card).logits.argmax(1)
    return torch.bincount(labels, minlength=card.n_classes).double().div(len(images)).numpy()


def run_config(run_dir: Path, results: dict) -> Path:
    """The config that names the evaluated run's dataset: the folder's own, else the checkpoint's run's."""
    from omegaconf import OmegaConf

    from advnets.jobs.eval_inputs import run_config_path

    for path in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        try:
            if path.is_file() and OmegaConf.select(OmegaConf.load(path), "dataset") is not None:
                return path
        except Exception as err:  # yaml's and OmegaConf's many parse errors
            raise UserError(
                f"cannot read {path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
            ) from None
    if not results.get("checkpoint"):
        raise UserError(f"no config naming the dataset in {run_dir} and no checkpoint in its results.json")
    return run_config_path(Path(results["checkpoint"]), None)


def run_datamodule(run_dir: Path, results: dict, config_dirs: list[Path]) -> ImageDataModule:
    """The evaluated run's data module, built from its config (checked as data first); its name must be the one
    ``results.json`` records."""
    from hydra.utils import instantiate

    from advnets.jobs.trusted import load_foreign_config, user_config_folders

    path = run_config(run_dir, results)
    config = load_foreign_config(path, [*config_dirs, *user_config_folders()])
    datamodule = instantiate(config.dataset)
    if datamodule.name != results["dataset"]:
        raise UserError(f"{path} names dataset {datamodule.name!r}, but results.json records {results['dataset']!r}")
    return datamodule


def plot(samples: torch.Tensor, reference: torch.Tensor, test: torch.Tensor, dataset: str, path: Path) -> Path:
    """The two panels for ``samples``, the dataset's ``test`` images and as many real ``reference`` images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fake, real = class_shares(samples, dataset), class_shares(test, dataset)
    d_fake = nearest_neighbours(test, samples, precision="float32")[1].pow(2).numpy()
    d_real = nearest_neighbours(test, reference[: len(samples)], precision="float32")[1].pow(2).numpy()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.arange(len(fake))
    left.bar(x - 0.2, fake, 0.4, label="samples")
    left.bar(x + 0.2, real, 0.4, label="test images")
    left.set(xticks=x, xlabel="class (domain classifier)", ylabel="share", title="class shares")
    left.legend()
    bins = np.linspace(0, float(np.percentile(np.concatenate([d_fake, d_real]), 99.5)), 60)
    right.hist(d_real, bins, alpha=0.6, label=f"nearest of {len(samples)} training images (mean {d_real.mean():.1f})")
    right.hist(d_fake, bins, alpha=0.6, label=f"nearest of {len(samples)} samples (mean {d_fake.mean():.1f})")
    right.set(xlabel="squared pixel distance from a test image", ylabel="test images", title="nearest-sample distance")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m advnets.metrics.figures", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--config-dir", type=Path, action="append", default=[], help="a folder of your own configs (repeatable)"
    )
    args = parser.parse_args(argv)
    try:
        results = json.loads((args.run_dir / "results.json").read_text())
        samples = torch.from_numpy(np.load(args.run_dir / "samples.npz")["samples"]).float()
    except (OSError, ValueError, KeyError) as err:
        fail(f"cannot read {args.run_dir}/results.json and samples.npz ({err})")
    try:
        datamodule = run_datamodule(args.run_dir, results, args.config_dir)
        reference, test = datamodule.reference_images(len(samples)), datamodule.load().test
        path = plot(samples, reference, test, datamodule.name, args.out or args.run_dir / "beyond_parzen.png")
    except UserError as err:
        fail(str(err))
    log.info("wrote %s", path)


if __name__ == "__main__":
    main()
