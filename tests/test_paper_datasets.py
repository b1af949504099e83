"""CIFAR-10 and TFD through the real loaders (synthetic files in the real formats), and every paper experiment
composing and running a few updates on reduced sizes."""

from __future__ import annotations

import hashlib
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from advnets.data import cifar10
from advnets.data.cifar10 import TEST_BATCH, TRAIN_BATCHES, CIFAR10Data, load_cifar10
from advnets.data.tfd import load_tfd
from advnets.errors import UserError
from advnets.evaluation import evaluate_run
from advnets.training import build, eval_settings

from conftest import assert_user_error, compose_cfg, quiet_trainer, run_advnets

PER_BATCH = 12  # real batches hold 10,000 images; the format is the same
SYNTHETIC_MD5: dict[str, str] = {}


@pytest.fixture(autouse=True)
def synthetic_batches_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader unpickles only batches with the published md5 sums: here those of the synthetic batches."""
    SYNTHETIC_MD5.clear()
    monkeypatch.setattr(cifar10, "BATCH_MD5", SYNTHETIC_MD5)


def seal(folder: Path) -> None:
    """The md5 sums of the synthetic batches in ``folder`` taken as the published ones."""
    for name in [*TRAIN_BATCHES, TEST_BATCH]:
        SYNTHETIC_MD5[name] = hashlib.md5((folder / name).read_bytes()).hexdigest()


def write_cifar(root: Path, seed: int = 0) -> Path:
    """The python version's batches: pickles of a dict with batch_label, labels, data uint8 [n, 3072], filenames."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [*TRAIN_BATCHES, TEST_BATCH]:
        blob = {
            "batch_label": f"synthetic {name}",
            "labels": rng.integers(0, 10, PER_BATCH).tolist(),
            "data": rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png" for i in range(PER_BATCH)],
        }
        with (folder / name).open("wb") as f:
            pickle.dump(blob, f, protocol=2)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": ["airplane"] * 10, "num_cases_per_batch": PER_BATCH, "num_vis": 3072}, f)
    seal(folder)
    return root


def raw_labels(root: Path, name: str) -> list[int]:
    with (root / "cifar-10-batches-py" / name).open("rb") as f:
        return pickle.load(f, encoding="latin1")["labels"]


def write_tfd(root: Path, n: int = 90, seed: int = 0) -> tuple[Path, np.ndarray, np.ndarray]:
    """A TFD_48x48.mat with the real keys and shapes: images [N, 48, 48] uint8, folds [N, 5], labs_ex, labs_id."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 48, 48), dtype=np.uint8)
    folds = np.zeros((n, 5), dtype=np.uint8)  # the first half unlabeled (0 in every fold)
    for fold in range(5):
        folds[n // 2 :, fold] = rng.permutation(np.resize([1, 2, 3], n - n // 2))
    path = root / "TFD" / "TFD_48x48.mat"
    path.parent.mkdir(parents=True)
    labels = rng.integers(1, 8, (n, 1))
    savemat(str(path), {"images": images, "folds": folds, "labs_ex": labels, "labs_id": labels})
    return path, images, folds


def test_cifar10_batches_are_split_and_contrast_normalised_as_pylearn2_did(tmp_path: Path) -> None:
    root = write_cifar(tmp_path)
    splits = load_cifar10(str(root), 40, 20, gcn=55.0)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (40, 20, PER_BATCH)
    assert splits.image_shape == (3, 32, 32) and splits.train.dtype == torch.float32
    with (root / "cifar-10-batches-py" / "data_batch_4").open("rb") as f:
        raw = pickle.load(f, encoding="latin1")["data"].astype(np.float64)
    # valid starts at training image 40: batch 4 (images 36..47), row 4; pylearn2's formula written out
    x = raw[4] - raw[4].mean()
    expected = x / (np.sqrt((x**2).sum()) / 55.0)
    np.testing.assert_allclose(splits.valid[0].numpy(), expected, rtol=1e-5, atol=1e-5)
    norms = splits.train.double().norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, 55.0), rtol=1e-5, atol=0)
    assert float(splits.train.double().mean(dim=1).abs().max()) < 1e-5
    plain = load_cifar10(str(root), 40, 20, gcn=None)
    assert float(plain.train.min()) >= 0.0 and float(plain.train.max()) <= 1.0
    labels = CIFAR10Data("cifar10", 10, 40, 20, root=str(root), download=False).labels()  # the data module's own
    assert (
        labels.test.tolist() == raw_labels(root, TEST_BATCH) and labels.valid[0] == raw_labels(root, "data_batch_4")[4]
    )
    assert (len(labels.train), len(labels.valid)) == (40, 20)


def test_cifar10_rows_are_channel_major_and_shown_as_rgb(tmp_path: Path) -> None:
    """A CIFAR row is the R plane, then G, then B, each 32x32 row-major (as pylearn2's 2014 DefaultViewConverter
    read it); the loader keeps that order and the pictures show channel 0 as red."""
    from advnets.pictures import to_images

    root = write_cifar(tmp_path)
    planes = np.zeros((PER_BATCH, 3, 32, 32), dtype=np.uint8)
    planes[:, 0], planes[:, 2] = 255, 102  # red plane full, green empty, blue 0.4
    planes[:, 0, 0, 1] = 0  # a dark red pixel at row 0, column 1 (not row 1, column 0)
    path = root / "cifar-10-batches-py" / TRAIN_BATCHES[0]
    with path.open("rb") as f:
        blob = pickle.load(f, encoding="latin1")
    with path.open("wb") as f:
        pickle.dump({**blob, "data": planes.reshape(PER_BATCH, 3072)}, f, protocol=2)
    seal(path.parent)
    image = to_images(load_cifar10(str(root), 40, 20, gcn=None).train[:1], (3, 32, 32))[0]
    expected = torch.from_numpy(planes[0]).float() / 255.0
    torch.testing.assert_close(image, expected)
    assert float(image[0, 0, 1]) == 0.0 and float(image[0, 1, 0]) == 1.0
    shown = to_images(load_cifar10(str(root), 40, 20, gcn=55.0).train[:1], (3, 32, 32))[0]
    red, green, blue = (float(shown[c].mean()) for c in range(3))
    assert red > blue > green  # contrast normalisation and the viewer's scaling keep each plane's channel


def test_cifar10_bad_files_give_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="CIFAR-10 batch missing: .*data_batch_1"):
        load_cifar10(str(tmp_path), 40, 20, gcn=55.0)
    root = write_cifar(tmp_path / "keys")
    with (root / "cifar-10-batches-py" / "data_batch_2").open("wb") as f:
        pickle.dump({"images": np.zeros((3, 3072), np.uint8)}, f)
    seal(root / "cifar-10-batches-py")
    with pytest.raises(UserError, match=r"data_batch_2 has no 'data' \(found \['images'\]\)"):
        load_cifar10(str(root), 40, 20, gcn=55.0)
    root = write_cifar(tmp_path / "shape")
    with (root / "cifar-10-batches-py" / "test_batch").open("wb") as f:
        pickle.dump({"data": np.zeros((3, 1024), np.uint8)}, f)
    seal(root / "cifar-10-batches-py")
    with pytest.raises(UserError, match=r"test_batch: data is uint8 \[3, 1024\]; expected uint8 \[n, 3072\]"):
        load_cifar10(str(root), 40, 20, gcn=55.0)


def test_tfd_folds_and_sets_are_pylearn2s(tmp_path: Path) -> None:
    _, images, folds = write_tfd(tmp_path)
    for fold in (0, 3):
        splits = load_tfd(str(tmp_path), fold)
        counts = [int((folds[:, fold] == k).sum()) for k in (0, 2, 3)]
        assert [len(splits.train), len(splits.valid), len(splits.test)] == counts
        first_valid = int(np.flatnonzero(folds[:, fold] == 2)[0])
        torch.testing.assert_close(splits.valid[0], torch.from_numpy(images[first_valid].reshape(-1) / 255.0).float())
    assert splits.image_shape == (1, 48, 48) and float(splits.train.max()) <= 1.0
    full = load_tfd(str(tmp_path), 1, train_set="full_train")
    assert len(full.train) == int(np.isin(folds[:, 1], (1, 2)).sum())


def test_tfd_bad_inputs_give_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"TFD not found: put TFD_48x48.mat at .*TFD/TFD_48x48.mat"):
        load_tfd(str(tmp_path), 0)
    write_tfd(tmp_path)
    with pytest.raises(UserError, match=r"dataset.fold=5; allowed: 0..4"):
        load_tfd(str(tmp_path), 5)
    savemat(str(tmp_path / "TFD" / "TFD_48x48.mat"), {"images": np.zeros((4, 48, 48), np.uint8)})
    with pytest.raises(UserError, match="lacks folds"):
        load_tfd(str(tmp_path), 0)
    savemat(str(tmp_path / "TFD" / "TFD_48x48.mat"), {"images": np.zeros((4, 32, 32)), "folds": np.zeros((4, 5))})
    with pytest.raises(UserError, match=r"images has shape \[4, 32, 32\]; expected \[N, 48, 48\]"):
        load_tfd(str(tmp_path), 0)


def test_missing_tfd_through_the_cli_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = run_advnets(
        "train", "experiment=paper_tfd", f"dataset.root={tmp_path}", "logger=none", f"hydra.run.dir={tmp_path}/r"
    )
    assert_user_error(proc, "TFD not found", "TFD_48x48.mat")


REDUCED = {  # the paper's recipes with narrower layers, so that a few updates take seconds on a CPU
    "paper_tfd": ["model.generator.hidden=[64,128]", "model.discriminator.units=[32,32]"],
    "paper_cifar10_fc": ["model.generator.hidden=[64,64]", "model.discriminator.units=[32,32]"],
    "paper_cifar10_conv": [
        "model.generator.hidden=[64,400]",
        "model.generator.channels=4",  # 4 x 10 x 10 = 400
        "model.discriminator.units=[40]",
    ],
}


@pytest.mark.parametrize("experiment", sorted(REDUCED))
def test_paper_experiment_composes_and_runs_a_few_updates(experiment: str, tmp_path: Path) -> None:
    if experiment == "paper_tfd":
        write_tfd(tmp_path)
    else:
        write_cifar(tmp_path)
    overrides = [
        f"experiment={experiment}",
        f"dataset.root={tmp_path}",
        "dataset.download=false",
        "dataset.batch_size=8",
        "logger=none",
        "threads=1",
        "eval.n_samples=50",
        *REDUCED[experiment],
    ]
    if experiment != "paper_tfd":
        overrides += ["dataset.n_train=40", "dataset.n_valid=20"]
    cfg = compose_cfg(overrides, tmp_path / "run")
    datamodule, game, _ = build(cfg)
    before = [p.detach().clone() for p in game.parameters()]
    trainer = quiet_trainer(
        max_epochs=1,
        limit_train_batches=3,
    )
    trainer.fit(game, datamodule=datamodule)
    assert trainer.global_step == 2 * 3
    moved = {n for (n, p), b in zip(game.named_parameters(), before, strict=True) if not torch.equal(p, b)}
    # both nets learned (a tiny step on a bias of -2.0 can round away in float32, so not every tensor must move)
    assert {n.split(".")[0] for n in moved} == {"generator", "discriminator"}
    assert len(moved) >= len(before) - 1
    assert game.noise == "gaussian"  # the yamls leave adversarial.Generator's default
    x = game.generator(torch.randn(5, 100))
    assert x.shape == (5, cfg.dataset.data_dim) and game.discriminator(x).shape == (5,)
    results = evaluate_run(game.generator, datamodule, cfg.game.noise, eval_settings(cfg), tmp_path / "eval", {})
    assert results["dataset"] == cfg.dataset.name and math.isfinite(results["parzen_ll"])
    assert (tmp_path / "eval" / "interpolation.png").is_file() and (tmp_path / "eval" / "nearest.png").is_file()
    if experiment == "paper_tfd":  # max_col_norm 1.9365 on every layer held after the updates
        assert results["fold"] == 0
        assert game.generator.body[2].bias.detach().mean() < -1.5  # h1 init_bias -2.0
        for net in (game.generator, game.discriminator):
            for p in net.parameters():
                if p.ndim == 2:
                    assert float(p.detach().norm(dim=1).max()) <= 1.9365 + 1e-5


def test_cifar10_is_downloaded_by_torchvision_on_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first run with an empty data folder: torchvision fetches the archive (from a local HTTP mirror here,
    serving synthetic batches in the real format), checks it, unpacks it, and the batches are read."""
    import hashlib
    import http.server
    import tarfile
    import threading
    from functools import partial

    from torchvision.datasets import CIFAR10

    from advnets.data.cifar10 import CIFAR10Data

    source = write_cifar(tmp_path / "source") / "cifar-10-batches-py"
    served = tmp_path / "served"
    served.mkdir()
    with tarfile.open(served / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(source, arcname="cifar-10-batches-py")

    def md5(path: Path) -> str:
        return hashlib.md5(path.read_bytes()).hexdigest()

    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(served / "cifar-10-python.tar.gz"))
    monkeypatch.setattr(CIFAR10, "train_list", [[n, md5(source / n)] for n in TRAIN_BATCHES])
    monkeypatch.setattr(CIFAR10, "test_list", [[TEST_BATCH, md5(source / TEST_BATCH)]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(source / "batches.meta")})
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz")
        fresh = tmp_path / "fresh"
        dm = CIFAR10Data("cifar10", 8, 40, 20, root=str(fresh), download=True, data_dim=3072)
        dm.prepare_data()
        splits = dm.load()
    finally:
        server.shutdown()
        server.server_close()
    assert (fresh / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (40, 20, PER_BATCH)
