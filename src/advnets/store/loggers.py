"""What every logger gets alike: pictures (W&B images, TensorBoard images, MLflow artifacts), and a TensorBoard
logger that keeps one event stream per run folder, its hyper-parameters included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.loggers import TensorBoardLogger as LightningTensorBoardLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from advnets.store.records import flat_keys

HPARAM_METRICS = ("val/parzen_ll", "test/parzen_ll")
"""The values TensorBoard's HParams dashboard lists beside each run's hyper-parameters (logged as scalars)."""

_open: list[LightningTensorBoardLogger] = []  # TensorBoard loggers of this process whose writer is still open


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoard logger with two changes: the end of ``fit`` (and every ``finalize``) flushes the
    event file but keeps it open, so what a run logs after training (the test values, the evaluation's
    pictures) goes into the same event file rather than a second one (``close_tensorboard`` closes it when the
    job ends); and the hyper-parameters reach TensorBoard's HParams dashboard (with ``HPARAM_METRICS``), not
    only ``hparams.yaml``."""

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None, step: int | None = None) -> None:
        super().log_hyperparams(params, metrics, step)  # hparams.yaml (and the summaries when metrics are given)
        if metrics is not None:
            return
        from torch.utils.tensorboard.summary import hparams

        flat = {k: _hparam(v) for k, v in flat_keys(dict(params), sep="/").items()}
        experiment, start, end = hparams(flat, dict.fromkeys(HPARAM_METRICS, 0.0))
        for summary in (experiment, start, end):
            self.experiment.file_writer.add_summary(summary, step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is not None:
            self.experiment.flush()
            if self not in _open:
                _open.append(self)


def _hparam(value: Any) -> int | float | str | bool:
    """A value as TensorBoard's HParams take it: numbers, strings and booleans as they are, the rest as text."""
    return value if isinstance(value, int | float | str | bool) else str(value)


def close_tensorboard() -> None:
    """Close the event files of this process's TensorBoard loggers (the end of a job); only loggers whose event
    file was opened are listed (``finalize``)."""
    while _open:
        _open.pop().experiment.close()


def _picture(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def log_picture(loggers: list[Any], key: str, path: Path, step: int) -> None:
    """A PNG to every logger that takes pictures, at ``step`` (an update count, like every logged value):
    W&B as an image, TensorBoard as an image of the run's event stream, MLflow as an artifact under the key's
    folder (``samples/epoch_0005.png``, ``test/samples_grid.png``). The CSV logger takes none: the PNG stays in
    the run folder."""
    for logger in loggers:
        if isinstance(logger, LightningTensorBoardLogger):
            logger.experiment.add_image(key, _picture(path), step, dataformats="HWC")
        elif isinstance(logger, MLFlowLogger):
            folder = key.rsplit("/", 1)[0] if "/" in key else key
            logger.experiment.log_artifact(logger.run_id, str(path), artifact_path=folder)
        elif hasattr(logger, "log_image"):  # W&B
            logger.log_image(key, [str(path)], step=step)
