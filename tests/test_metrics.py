"""The metric suite beyond Parzen: FID/KID through the domain classifier, PRDC against the ``prdc`` package,
class shares, the nearest-sample distance, DDP states, the committed classifiers and the metric registry."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from advnets.data import load_digits
from advnets.errors import UserError
from advnets.metrics import cache, registry
from advnets.metrics.classes import ClassShares, NearestSampleDistance
from advnets.metrics.features import CLASSIFIER_DIR, MaxPool2x2, available_classifiers, load_classifier
from advnets.metrics.kid import KernelDistance, cached_real_sums
from advnets.metrics.knn import manifold_scores, smallest
from advnets.metrics.parzen import parzen_protocol
from advnets.metrics.suite import Precomputed, SuiteSettings, extract, score_suite

from conftest import QUICK, REPO, assert_user_error, compose_cfg, run_cli, run_refused, train_quick


@pytest.fixture(scope="module")
def digits():
    return load_digits(1200, 300)


@pytest.fixture(scope="module")
def features() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 16, generator=g)
    fake = 0.8 * torch.randn(250, 16, generator=g) + 0.3
    return real, fake


def _fid(real: torch.Tensor, fake: torch.Tensor, feature: torch.nn.Module) -> float:
    metric = FrechetInceptionDistance(feature=feature)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def test_fid_of_a_set_against_itself_is_zero_and_against_noise_large(digits) -> None:
    net, card = load_classifier("digits")
    feature = Precomputed(card.feature_dim)  # the suite's features, extracted once, as the suite feeds FID

    def features(images: torch.Tensor) -> torch.Tensor:
        return extract(images, net, card).features

    test = features(digits.test)
    same = _fid(test, test, feature)
    other_real = _fid(features(digits.train[:297]), test, feature)
    noise = _fid(features(torch.rand(297, 64, generator=torch.Generator().manual_seed(1))), test, feature)
    assert abs(same) < 1e-3
    assert noise > 10 * other_real > 0


def test_fid_equals_the_scipy_sqrtm_formula(features) -> None:
    real, fake = features
    got = _fid(real, fake, Precomputed(16))
    r, f = real.double().numpy(), fake.double().numpy()
    mu_r, mu_f = r.mean(0), f.mean(0)
    cov_r, cov_f = np.cov(r, rowvar=False), np.cov(f, rowvar=False)
    covmean = scipy.linalg.sqrtm(cov_r @ cov_f).real
    want = ((mu_r - mu_f) ** 2).sum() + np.trace(cov_r + cov_f - 2 * covmean)
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("k", [3, 5])
def test_precision_recall_density_coverage_equal_the_prdc_package(features, k: int, capsys) -> None:
    from prdc import compute_prdc

    real, fake = features
    want = compute_prdc(real.numpy(), fake.numpy(), nearest_k=k)
    got = {n: float(v) for n, v in manifold_scores(real, fake, pr_k=k, dc_k=k).items()}
    for name in ("precision", "recall", "density", "coverage"):
        assert got[name] == pytest.approx(float(want[name]), abs=1e-9), name
    assert 0 < got["precision"] < 1 and 0 < got["coverage"] < 1


def test_class_shares_and_nearest_sample_distance_by_hand() -> None:
    eye = torch.eye(3)
    shares = ClassShares(torch.nn.Identity(), n_classes=3)
    shares.update(eye[[0, 0, 1, 1, 2, 2]], real=True)  # test set: 1/3 each
    shares.update(eye[[0, 0, 0, 1]], real=False)  # samples: 3/4, 1/4, 0
    out = shares.compute()
    p = np.array([0.75, 0.25])
    assert float(out["class_kl"]) == pytest.approx(float((p * np.log(p * 3)).sum()))
    assert float(out["class_coverage"]) == pytest.approx(2 / 3)
    nearest = NearestSampleDistance()
    nearest.update(torch.tensor([[0.0, 0.0], [3.0, 4.0]]), real=True)
    nearest.update(torch.tensor([[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]]), real=False)
    assert float(nearest.compute()) == pytest.approx((1.0 + 4.0) / 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _all_metrics() -> dict:
    return {
        "cls": ClassShares(torch.nn.Identity(), n_classes=16),
        "near": NearestSampleDistance(),
    }


def _values(metrics: dict) -> dict[str, float]:
    out = {}
    for name, metric in metrics.items():
        value = metric.compute()
        items = value.items() if isinstance(value, dict) else [("", value)]
        out.update({f"{name}{k}": v.tolist() for k, v in items})
    return out


def _ddp_worker(rank: int, world: int, port: int, out_dir: str, real, fake) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        metrics = _all_metrics()
        r = real[:170] if rank == 0 else real[170:]  # unequal shares: every state must be gathered, not averaged
        f = fake[:60] if rank == 0 else fake[60:]
        for metric in metrics.values():
            metric.update(r, real=True)
            metric.update(f, real=False)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(_values(metrics)))
    finally:
        dist.destroy_process_group()


def test_metrics_under_two_process_ddp_equal_one_process(features, tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    real, fake = features
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path), real, fake), nprocs=2, join=True)
    single = _all_metrics()
    for metric in single.values():
        metric.update(real, real=True)
        metric.update(fake, real=False)
    want = _values(single)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got.keys() == want.keys()
        for key in want:
            assert np.allclose(got[key], want[key], atol=1e-9), key


@pytest.mark.skipif(
    "ADVNETS_DATA_DIR" not in os.environ, reason="needs ADVNETS_DATA_DIR (the folder holding MNIST/raw)"
)
@pytest.mark.parametrize("name,floor", [("mnist", 0.99), ("fashion_mnist", 0.89)])
def test_committed_classifier_scores_its_card_accuracy_on_the_real_test_set(name: str, floor: float) -> None:
    from torchvision.datasets import MNIST, FashionMNIST

    dataset = {"mnist": MNIST, "fashion_mnist": FashionMNIST}[name]
    test = dataset(os.environ["ADVNETS_DATA_DIR"], train=False, download=False)
    images = test.data.reshape(-1, 784).float() / 255.0
    net, card = load_classifier(name)
    with torch.no_grad():
        predicted = torch.cat([net(images[i : i + 2000]).argmax(1) for i in range(0, 10000, 2000)])
    accuracy = float((predicted == test.targets).float().mean())
    assert accuracy >= floor and accuracy == pytest.approx(card.test_accuracy, abs=1e-6)


def test_committed_classifiers_are_small_and_match_their_cards() -> None:
    assert {"mnist", "digits", "fashion_mnist"} <= set(available_classifiers())
    for name in available_classifiers():
        net, card = load_classifier(name)  # checks the md5
        weights = CLASSIFIER_DIR / card.weights
        assert weights.stat().st_size <= 2 * 2**20 and card.dataset == name
        with torch.no_grad():
            assert net.features(torch.rand(2, *card.image_shape)).shape == (2, card.feature_dim)


def test_suite_real_vs_real_beats_real_vs_noise_on_every_metric(digits) -> None:
    settings = SuiteSettings(kid_subset_size=100, kid_subsets=20)
    real = score_suite(digits.train[:297], digits.test, "digits", settings=settings)
    noise = score_suite(
        torch.rand(297, 64, generator=torch.Generator().manual_seed(2)), digits.test, "digits", settings=settings
    )
    for name, value in real.items():
        better = registry.spec(name).better(value, noise[name])
        assert better or (name == "class_coverage" and value == noise[name] == 1.0), (name, value, noise[name])


def test_bad_input_is_one_clear_error(digits) -> None:
    with pytest.raises(UserError, match="no domain classifier for dataset='cifar10'; available: .*digits.*mnist"):
        load_classifier("cifar10")
    net, card = load_classifier("digits")
    with pytest.raises(
        UserError, match=r"images of shape \(5, 784\) do not fit .* allowed: \[N, 64\] or \[N, 1, 8, 8\]"
    ):
        extract(torch.rand(5, 784), net, card)
    with pytest.raises(UserError, match="eval.metrics contains fd; allowed: fid"):
        score_suite(digits.test, digits.test, "digits", names=["fd"])


def test_registry_names_each_metric_with_its_direction() -> None:
    assert registry.mode("val/parzen_ll") == "max" and registry.direction("val/fid") == "minimize"
    assert registry.higher_is_better("best_val_parzen_ll") and not registry.higher_is_better("test/kid")
    assert registry.spec("fid").failed > 0 > registry.spec("parzen_ll").failed
    with pytest.raises(UserError, match="metric 'val/fdi' is not registered; allowed: val/parzen_ll"):
        registry.spec("val/fdi")


def test_checkpoint_and_sweeper_follow_the_objective_direction() -> None:
    from hydra import compose, initialize_config_dir

    from advnets import CONF_DIR

    cfg = compose_cfg([])
    assert cfg.objective == "val/parzen_ll"
    assert (cfg.callbacks.model_checkpoint.monitor, cfg.callbacks.model_checkpoint.mode) == ("val/parzen_ll", "max")
    cfg = compose_cfg(["objective=val/fid"])
    assert (cfg.callbacks.model_checkpoint.monitor, cfg.callbacks.model_checkpoint.mode) == ("val/fid", "min")
    for objective, direction in (("val/parzen_ll", "maximize"), ("val/fid", "minimize")):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            sweep = compose("train", [f"objective={objective}", "hparams_search=optuna"], return_hydra_config=True)
        assert sweep.hydra.sweeper.direction == direction


def test_a_run_can_select_its_checkpoint_by_val_fid_and_reports_the_best_score(tmp_path: Path) -> None:
    """objective=val/fid: the monitor logs it, the checkpoint keeps the lowest, the sweep score is that one."""
    import csv

    run = train_quick(
        tmp_path / "run",
        "objective=val/fid",
        "callbacks.metric_monitor.every_n_epochs=2",
        "callbacks.metric_monitor.n_samples=300",
        "logger=csv",
        "evaluate=false",
    )
    with (run / "csv" / "metrics.csv").open() as handle:
        fid = {int(r["epoch"]): float(r["val/fid"]) for r in csv.DictReader(handle) if r.get("val/fid")}
    assert sorted(fid) == [1, 3]  # Lightning's 0-indexed epochs of epochs 2 and 4
    best_epoch = min(fid, key=fid.get)
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == best_epoch
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["objective_score"] == pytest.approx(min(fid.values()), rel=1e-6)


def test_an_objective_nobody_logs_is_one_clear_error(tmp_path: Path) -> None:
    from advnets.training import check_objective

    proc = run_refused("train", *QUICK, "objective=val/fid", "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
    assert_user_error(proc, "objective=val/fid is not logged", "callbacks.metric_monitor.every_n_epochs=5")
    for wrong in ("val/fdi", "test/fid"):  # the objective is named, not a key built from it
        proc = run_refused("train", *QUICK, f"objective={wrong}", "logger=none", f"hydra.run.dir={tmp_path / 'run'}")
        assert_user_error(proc, f"objective='{wrong}'", "a validation metric", "val/parzen_ll, val/fid")
        assert "test/" not in proc.stderr.replace(wrong, "") and "callbacks" not in proc.stderr
    with pytest.raises(UserError, match="metric 'val/fdi' is not registered; allowed: val/parzen_ll"):
        check_objective(compose_cfg(["objective=val/fdi"]))
    with pytest.raises(UserError, match="objective=test/fid; allowed: a validation metric"):
        check_objective(compose_cfg(["objective=test/fid"]))
    assert (
        check_objective(compose_cfg(["objective=val/fid", "callbacks.metric_monitor.every_n_epochs=5"])).name == "fid"
    )


def test_a_misspelt_metric_fails_before_any_work(tmp_path: Path) -> None:
    published = REPO / "results" / "paper_mnist" / "generator.pt"  # a real generator: the metric is the mistake
    proc = run_refused("evaluate", str(published), "eval.metrics=[fid,fd]", f"hydra.run.dir={tmp_path / 'eval'}")
    assert_user_error(proc, "eval.metrics contains fd; allowed: fid, kid")
    assert not (tmp_path / "eval").exists()


def test_classifier_cli_trains_and_writes_weights_and_card(tmp_path: Path) -> None:
    from advnets.metrics.features import ClassifierCard, md5_of

    out = tmp_path / "classifiers"
    common = ["dataset=digits", "threads=1", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = run_cli("classifier", *common, "trainer.max_epochs=3", f"out_dir={out}")  # the command's own output
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Tip" not in proc.stdout + proc.stderr and "srun" not in proc.stderr  # no notices that ask nothing
    card = ClassifierCard.read(out / "digits.json")
    assert card.md5 == md5_of(out / "digits.pt") and card.feature_dim == 128 and 0.5 < card.test_accuracy <= 1
    net, card = load_classifier("digits", out)
    assert extract(torch.rand(4, 64), net, card).features.shape == (4, 128)
    refused = run_refused(
        "classifier", *common, "trainer.max_epochs=1", "classifier.min_accuracy=1.01", f"out_dir={out}"
    )
    assert_user_error(refused, "classifier.min_accuracy=1.01", "nothing written")
    assert md5_of(out / "digits.pt") == card.md5  # the earlier classifier is untouched


def test_parzen_test_pass_gives_the_nearest_sample_distance() -> None:
    g = torch.Generator().manual_seed(3)
    samples, test = torch.rand(700, 20, generator=g), torch.rand(300, 20, generator=g)
    result = parzen_protocol(samples, None, test, sigma=0.3)
    brute = torch.cdist(test.double(), samples.double()).pow(2).amin(1).mean()
    nearest = NearestSampleDistance()
    nearest.update(test, real=True)
    nearest.update(samples, real=False)
    assert result.nearest_sq_dist == pytest.approx(float(brute), rel=1e-12)
    assert result.nearest_sq_dist == pytest.approx(float(nearest.compute()), rel=1e-9)


def test_duplicates_with_a_zero_radius_match_prdc() -> None:
    from prdc import compute_prdc

    g = torch.Generator().manual_seed(1)
    real = torch.cat([torch.randn(60, 8, generator=g), torch.ones(4, 8)])  # 4 copies: their 3-NN radius is 0
    fake = torch.cat([torch.randn(50, 8, generator=g), torch.ones(2, 8)])  # on the copies, inside no ball
    want = compute_prdc(real.numpy(), fake.numpy(), nearest_k=3)
    got = manifold_scores(real, fake, pr_k=3, dc_k=3)
    for name in ("precision", "recall", "density", "coverage"):
        assert float(got[name]) == pytest.approx(float(want[name]), abs=1e-12), name


def test_the_real_side_is_cached_by_content(digits, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ADVNETS_CACHE_DIR", str(tmp_path))
    cache.clear_memory()
    settings = SuiteSettings(kid_subsets=5, kid_subset_size=100)
    fresh = score_suite(digits.train[:297], digits.test, "digits", settings=settings)
    (entry,) = tmp_path.glob("real-*.pt")
    cache.clear_memory()
    assert score_suite(digits.train[:297], digits.test, "digits", settings=settings) == fresh  # read back: same
    stored = torch.load(entry, weights_only=True)
    torch.save({**stored, "logits": -stored["logits"]}, entry)  # a planted entry is what the next run reads
    cache.clear_memory()
    planted = score_suite(digits.train[:297], digits.test, "digits", settings=settings)
    assert planted["class_kl"] != fresh["class_kl"] and planted["fid"] == fresh["fid"]
    changed = digits.test.clone()
    changed[0, 0] += 0.5  # one pixel: another key, computed afresh
    cache.clear_memory()
    score_suite(digits.train[:297], changed, "digits", settings=settings)
    assert len(list(tmp_path.glob("real-*.pt"))) == 2
    entry.write_bytes(b"not a torch file")  # damaged: recomputed and replaced, never an error
    cache.clear_memory()
    assert score_suite(digits.train[:297], digits.test, "digits", settings=settings) == fresh
    assert torch.load(entry, weights_only=True)["logits"].shape == stored["logits"].shape


def test_kid_equals_torchmetrics_with_and_without_the_cached_real_sums(features) -> None:
    real, fake = features

    def kid(metric: type, seed: int = 3, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        m = metric(feature=torch.nn.Identity(), subsets=7, subset_size=50, **kwargs)
        m.update(real, real=True)
        m.update(fake, real=False)
        torch.manual_seed(seed)
        return m.compute()

    want = kid(KernelInceptionDistance)
    for got in (kid(KernelDistance), kid(KernelDistance, real_sums=cached_real_sums(real, len(fake), 7, 50, seed=3))):
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    other_draws = cached_real_sums(real, len(fake), 7, 50, seed=4)  # the sums are used: other subsets, other KID
    assert not torch.equal(kid(KernelDistance, real_sums=other_draws)[0], want[0])


@pytest.mark.parametrize(("cols", "chunk"), [(2400, 100), (5017, 100), (300, 7), (41, 100)])
def test_chunked_smallest_values_equal_topk(cols: int, chunk: int) -> None:
    g = torch.Generator().manual_seed(cols)
    d = torch.randn(40, cols, generator=g)
    d[:, ::7] = 0.25  # ties across chunks
    d[5, :20] = -1.0  # more tied smallest values than k, all in one chunk
    d[6] = torch.inf
    want = d.topk(6, dim=1, largest=False, sorted=True).values
    assert torch.equal(smallest(d, 6, chunk), want)


def test_channels_last_pooling_equals_max_pool2d() -> None:
    x = torch.randn(3, 5, 9, 7).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.equal(MaxPool2x2()(x), torch.nn.functional.max_pool2d(x, 2))
    net, _ = load_classifier("mnist")
    images = torch.rand(8, 784)
    with torch.no_grad():
        fast = net.features(images)
    with torch.enable_grad():
        assert torch.equal(net.features(images), fast)  # the pooling kernel, used under autograd: the same values


def test_inception_score_is_the_same_whichever_metrics_ran_before_it() -> None:
    """IS draws its split permutation from its own seeding, not from what KID's subsets left."""
    from advnets.metrics.suite import Extracted, score_extracted

    g = torch.Generator().manual_seed(0)
    real = Extracted(torch.randn(300, 16, generator=g), torch.randn(300, 10, generator=g), torch.rand(300, 64))
    fake = Extracted(torch.randn(250, 16, generator=g), 3 * torch.randn(250, 10, generator=g), torch.rand(250, 64))
    settings = SuiteSettings(kid_subsets=5, kid_subset_size=50)
    alone = score_extracted(fake, real, ["inception_score"], settings)["inception_score"]
    after_kid = score_extracted(fake, real, ["fid", "kid", "inception_score"], settings)["inception_score"]
    assert after_kid == alone


def test_the_classifier_runs_in_full_float32_and_the_cache_names_device_and_precision(digits, monkeypatch) -> None:
    """On CUDA TF32 would change the features: extraction turns it off (cuDNN's convolutions too), and a cached
    real side is named by the device type and the float32 arithmetic that computed it."""
    from advnets.metrics import features, suite

    conv, matmul = getattr(torch.backends.cudnn, "conv", None), torch.backends.cuda.matmul
    if not hasattr(conv, "fp32_precision"):
        pytest.skip("torch < 2.9 has only the legacy allow_tf32 flags")
    seen: list[tuple[str, str]] = []
    original = features.LeNet.features

    def recording(self, x):
        seen.append((conv.fp32_precision, matmul.fp32_precision))
        return original(self, x)

    keys: list[dict] = []
    original_key = cache.key

    def recording_key(kind: str, **parts):
        keys.append({"kind": kind, **parts})
        return original_key(kind, **parts)

    monkeypatch.setattr(features.LeNet, "features", recording)
    monkeypatch.setattr(cache, "key", recording_key)
    cache.clear_memory()
    net, card = load_classifier("digits")
    settings = SuiteSettings(kid_subsets=5, kid_subset_size=100)
    before = conv.fp32_precision, matmul.fp32_precision
    conv.fp32_precision = matmul.fp32_precision = "tf32"  # what a CUDA user may have set
    try:
        fake, real = suite.extract(digits.train[:297], net, card), suite.extract_real(digits.test, net, card, settings)
        suite.score_extracted(fake, real, ["kid"], settings)
        after = conv.fp32_precision, matmul.fp32_precision
    finally:
        conv.fp32_precision, matmul.fp32_precision = before
    assert after == ("tf32", "tf32")  # the caller's settings come back
    assert seen and set(seen) == {("ieee", "ieee")}
    for parts in keys:
        assert parts["device"] == "cpu" and parts["float32"] == "ieee", parts
    assert {p["kind"] for p in keys} == {"real", "kid-real"}
