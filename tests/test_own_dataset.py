"""A user's own dataset, defined only in the user's config folder and package: no table in advnets names it.

Its domain classifier is trained by ``advnets-classifier`` into the user cache from the labels its data module
gives, and an evaluation of a run on it then reports the classifier metrics through that cached classifier."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from conftest import QUICK, REPO, assert_user_error, run_advnets

MODULE = '''
"""scikit-learn's 8x8 digits labelled even (0) or odd (1): a dataset advnets does not know."""

import numpy as np
import torch

from advnets.data.base import ImageDataModule, Labels, Splits


def pool():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return torch.from_numpy(digits.data.astype(np.float32) / 16.0), torch.from_numpy(digits.target % 2).long()


class ParityDigits(ImageDataModule):
    def read(self) -> Splits:
        images, _ = pool()
        end = self.n_train + self.n_valid
        return Splits(images[: self.n_train], images[self.n_train : end], images[end:], (1, 8, 8))

    def labels(self) -> Labels:
        _, parity = pool()
        end = self.n_train + self.n_valid
        return Labels(parity[: self.n_train], parity[self.n_train : end], parity[end:])


class UnlabelledDigits(ParityDigits):
    def labels(self):
        return None


class MisalignedDigits(ParityDigits):
    def labels(self) -> Labels:
        full = super().labels()
        return Labels(full.train, full.valid, full.test[:-1])
'''

CONFIG = """
_target_: parity_data.{cls}
name: {name}
root: null
download: false
batch_size: 100
n_train: 1200
n_valid: 300
data_dim: 64
seed: ${{seed}}
"""


@pytest.fixture
def own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The user's package (``parity_data``) importable here and in subprocesses, their config folder with
    ``dataset/parity.yaml`` (and two broken ones), and a user cache of this test's own."""
    package = tmp_path / "user_code"
    package.mkdir()
    (package / "parity_data.py").write_text(textwrap.dedent(MODULE))
    conf = tmp_path / "user_conf" / "dataset"
    conf.mkdir(parents=True)
    (conf / "parity.yaml").write_text(CONFIG.format(cls="ParityDigits", name="parity_digits"))
    (conf / "unlabelled.yaml").write_text(CONFIG.format(cls="UnlabelledDigits", name="unlabelled_digits"))
    (conf / "misaligned.yaml").write_text(CONFIG.format(cls="MisalignedDigits", name="misaligned_digits"))
    monkeypatch.syspath_prepend(str(package))
    return {
        "conf": str(conf.parent),
        "ADVNETS_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests"), str(package)]),
    }


def env_of(own: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in own.items() if k != "conf"}


def test_own_dataset_gets_its_classifier_in_the_user_cache_and_evaluation_uses_it(
    own, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from advnets.metrics.features import CLASSIFIER_DIR, ClassifierCard, md5_of

    env, conf = env_of(own), own["conf"]
    run = tmp_path / "run"
    first = run_advnets(
        "train", "--config-dir", conf, *QUICK, "dataset=parity", "logger=csv", f"hydra.run.dir={run}", **env
    )
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["dataset"] == "parity_digits" and "metrics" not in results
    assert "no domain classifier for dataset='parity_digits'" in results["metrics_skipped"]
    assert "the --config-dir it came from" in results["metrics_skipped"]  # the config name alone is not found
    skipped = [line for line in first.stdout.splitlines() if "metrics beyond Parzen skipped" in line]
    assert len(skipped) == 1, first.stdout[-3000:]  # one clear line, no wrong classifier

    proc = run_advnets(
        "classifier",
        "--config-dir",
        conf,
        "dataset=parity",
        "trainer.max_epochs=2",
        "threads=1",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path / 'classifier'}",
        **env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cached = Path(own["ADVNETS_CACHE_DIR"]) / "classifiers"
    card = ClassifierCard.read(cached / "parity_digits.json")
    assert card.n_classes == 2 and card.image_shape == (1, 8, 8)  # even / odd: the data module's own labels
    assert card.md5 == md5_of(cached / "parity_digits.pt") and card.test_accuracy > 0.6
    assert not (CLASSIFIER_DIR / "parity_digits.json").exists()  # the user cache, not the package

    evaluated = run_advnets(
        "evaluate",
        "--config-dir",
        conf,
        f"ckpt_path={run}",
        "eval.n_samples=300",
        "eval.metrics=[fid,class_kl,class_coverage]",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'eval'}",
        **env,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert set(results["metrics"]) == {"fid", "class_kl", "class_coverage"} and "metrics_skipped" not in results
    assert results["metrics_protocol"]["classifier"] == {
        "dataset": "parity_digits",
        "md5": card.md5,
        "test_accuracy": card.test_accuracy,
    }
    assert results["metrics"]["class_coverage"] in (0.0, 0.5, 1.0)  # a share of 2 classes, not of 10

    from advnets.metrics.figures import main as draw_figures

    monkeypatch.setenv("ADVNETS_CACHE_DIR", own["ADVNETS_CACHE_DIR"])
    with pytest.raises(SystemExit) as refused:  # the run's config names the user's class: built only when told
        draw_figures([str(tmp_path / "eval")])
    assert refused.value.code == 2 and "parity_data.ParityDigits" in capsys.readouterr().err
    draw_figures([str(tmp_path / "eval"), "--config-dir", conf])
    assert (tmp_path / "eval" / "beyond_parzen.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("dataset", "fragments"),
    [
        ("unlabelled", ["dataset='unlabelled_digits'", "has no class labels", "labels()"]),
        ("misaligned", ["dataset='misaligned_digits'", "test labels torch.int64 [296] for 297 test images"]),
    ],
)
def test_a_dataset_without_fitting_labels_gets_no_classifier(
    own, tmp_path: Path, dataset: str, fragments: list[str]
) -> None:
    proc = run_advnets(
        "classifier",
        "--config-dir",
        own["conf"],
        f"dataset={dataset}",
        "threads=1",
        f"hydra.run.dir={tmp_path / 'classifier'}",
        **env_of(own),
    )
    assert_user_error(proc, *fragments)
    assert not (Path(own["ADVNETS_CACHE_DIR"]) / "classifiers").exists()


def test_without_a_user_cache_advnets_classifier_asks_for_out_dir(own, tmp_path: Path) -> None:
    env = {**env_of(own), "ADVNETS_CACHE_DIR": "off"}
    proc = run_advnets(
        "classifier",
        "--config-dir",
        own["conf"],
        "dataset=parity",
        "trainer.max_epochs=1",
        "threads=1",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path / 'classifier'}",
        **env,
    )
    assert_user_error(proc, "ADVNETS_CACHE_DIR=off", "out_dir=DIR")


def test_every_shipped_dataset_says_its_own_labels() -> None:
    from sklearn.datasets import load_digits

    from advnets.data.digits import DigitsData
    from advnets.data.tfd import TFDData

    digits = DigitsData("digits", batch_size=10, n_train=1000, n_valid=200)
    labels, target = digits.labels(), load_digits().target
    assert labels.train.tolist() == target[:1000].tolist() and labels.test.tolist() == target[1200:].tolist()
    assert len(labels.test) == len(digits.load().test) and labels.n_classes == 10
    assert TFDData("tfd", batch_size=10, n_train=None, n_valid=None).labels() is None
    assert TFDData("tfd", batch_size=10, n_train=None, n_valid=None, fold=3).record() == {"dataset": "tfd", "fold": 3}
    assert digits.record() == {"dataset": "digits"} and digits.image_shape == (1, 8, 8)


def test_the_packaged_classifier_comes_before_the_user_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from advnets.metrics.features import CLASSIFIER_DIR, ClassifierCard, find_classifier, load_classifier

    cache = tmp_path / "cache"
    proc = run_advnets(
        "classifier",
        "dataset=digits",
        "trainer.max_epochs=1",
        "threads=1",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path / 'classifier'}",
        ADVNETS_CACHE_DIR=str(cache),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "advnets ships a classifier for digits: evaluation uses that one" in proc.stderr
    assert (cache / "classifiers" / "digits.json").is_file()
    monkeypatch.setenv("ADVNETS_CACHE_DIR", str(cache))
    packaged = ClassifierCard.read(CLASSIFIER_DIR / "digits.json")
    assert find_classifier("digits") == CLASSIFIER_DIR / "digits.json"
    assert (
        load_classifier("digits")[1].md5 == packaged.md5 != ClassifierCard.read(cache / "classifiers/digits.json").md5
    )


def test_a_damaged_card_in_the_user_cache_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from advnets.errors import UserError
    from advnets.metrics.features import available_classifiers, load_classifier

    monkeypatch.setenv("ADVNETS_CACHE_DIR", str(tmp_path))
    (tmp_path / "classifiers").mkdir()
    (tmp_path / "classifiers" / "mine.json").write_text('{"dataset": "mine"')
    assert "mine" in available_classifiers() and "digits" in available_classifiers()
    with pytest.raises(
        UserError, match=r"cannot read domain classifier card .*classifiers/mine\.json: JSONDecodeError"
    ):
        load_classifier("mine")
