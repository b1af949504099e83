"""advnets-report: Table 1 with our rows, over seeds, with skipped files named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from advnets.cli.report import main, report

from conftest import run_refused

FIXTURES = Path(__file__).parent / "fixtures" / "report"


def table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]


def test_paper_rows_come_first_and_verbatim() -> None:
    text, _ = report([FIXTURES / "one_seed"])
    rows = table_rows(text)
    assert rows[0] == ["Model", "MNIST", "TFD"]
    assert rows[1:5] == [
        ["DBN (paper)", "138 ± 2", "1909 ± 66"],
        ["Stacked CAE (paper)", "121 ± 1.6", "2110 ± 50"],
        ["Deep GSN (paper)", "214 ± 1.1", "1890 ± 29"],
        ["Adversarial nets (paper)", "225 ± 2", "2057 ± 26"],
    ]
    assert rows[5] == ["advnets: paper_mnist", "**174.4 ± 1.4**", "—"]


def test_one_seed_reports_the_test_image_standard_error() -> None:
    text, _ = report([FIXTURES / "one_seed"])
    detail = [r for r in table_rows(text) if r[0] == "paper_mnist"][0]
    assert detail[1:] == [
        "mnist",
        "174.40 ± 1.40",
        "test images",
        "0.2154",
        "—",  # epochs trained: not recorded
        "200",  # the best checkpoint's epoch
        "2.00",
        "x86_64 CPU, 1 threads",
        "0",
    ]


def test_three_seeds_give_mean_and_standard_error_over_seeds() -> None:
    text, _ = report([FIXTURES / "three_seeds"])
    rows = table_rows(text)
    assert ["advnets: paper_mnist (game.update=alternating)", "**170.0 ± 5.8**", "—"] in rows
    detail = [r for r in rows if r[0] == "paper_mnist (game.update=alternating)"][0]
    assert detail[2:4] == ["170.00 ± 5.77", "3 seeds"]  # sd 10 / sqrt 3
    assert detail[-1] == "1, 2, 3"


def test_missing_required_field_is_skipped_with_reason_and_the_rest_reported() -> None:
    text, skipped = report([FIXTURES])
    assert len(skipped) == 1 and "missing_field" in skipped[0] and "lacks parzen_ll" in skipped[0]
    labels = [r[0] for r in table_rows(text)]
    assert "advnets: paper_mnist (game.noise=gaussian)" in labels  # missing optional fields are shown as —
    detail = [r for r in table_rows(text) if r[0] == "paper_mnist (game.noise=gaussian)"][0]
    assert detail[5:9] == ["—", "—", "—", "—"]


def test_other_dataset_is_kept_out_of_the_paper_columns() -> None:
    text, _ = report([FIXTURES / "other_dataset", FIXTURES / "one_seed"])
    rows = table_rows(text)
    assert not any(r[0].startswith("advnets: quickstart") for r in rows)
    assert [r for r in rows if r[0] == "quickstart"][0][1:3] == ["digits", "-2.50 ± 0.80"]


def test_cli_writes_markdown_and_refuses_nothing_to_report(tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    main([str(FIXTURES / "one_seed"), "--out", str(out)])
    assert "| advnets: paper_mnist | **174.4 ± 1.4** | — |" in out.read_text()
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_refused("report", str(empty))
    assert proc.returncode == 2 and proc.stderr.startswith("advnets: error: no usable results.json")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("bad", ["{not json", json.dumps({"dataset": "mnist"})])
def test_broken_files_are_named(tmp_path: Path, bad: str) -> None:
    (tmp_path / "results.json").write_text(bad)
    proc = run_refused("report", str(tmp_path))
    assert proc.returncode == 2 and str(tmp_path / "results.json") in proc.stderr


def test_a_published_label_names_the_row_as_given() -> None:
    text, _ = report([FIXTURES / "labelled"])
    assert ["advnets: Gaussian noise, 20 epochs", "**150.0 ± 1.5**", "—"] in table_rows(text)


def test_tfd_folds_fill_the_tfd_column_with_mean_and_se_across_folds(tmp_path: Path) -> None:
    """Table 1's TFD protocol: one run per fold (sigma chosen on that fold's validation set), mean ± SE over folds."""
    for fold, ll in enumerate([2000.0, 2010.0, 2020.0, 2030.0, 2040.0]):
        run = tmp_path / f"fold{fold}"
        run.mkdir()
        overrides = ["experiment=paper_tfd"] + ([f"dataset.fold={fold}"] if fold else [])
        result = {"parzen_ll": ll, "parzen_se": 30.0, "sigma": 0.05 + 0.01 * fold, "dataset": "tfd", "fold": fold}
        result.update({"seed": 0, "experiment": "paper_tfd", "overrides": overrides})
        (run / "results.json").write_text(json.dumps(result))
    rows = table_rows(report([tmp_path])[0])
    assert ["advnets: paper_tfd", "—", "**2020.0 ± 7.1**"] in rows  # sd 15.81 / sqrt 5
    detail = [r for r in rows if r[0] == "paper_tfd"][0]
    assert detail[2:4] == ["2020.00 ± 7.07", "5 folds"] and detail[4] == "0.05, 0.06, 0.07, 0.08, 0.09"


def test_a_row_evaluated_off_the_papers_protocol_is_marked_and_never_bold(tmp_path: Path) -> None:
    result = json.loads((FIXTURES / "one_seed" / "results.json").read_text())
    result.update(n_samples=2000, experiment="quickstart", overrides=["experiment=quickstart"])
    (tmp_path / "results.json").write_text(json.dumps(result))
    rows = table_rows(report([tmp_path])[0])
    assert ["advnets: quickstart (not the paper's protocol: 2,000 samples)", "174.4 ± 1.4", "—"] in rows


def test_an_eval_result_is_named_by_its_checkpoint_and_each_dataset_by_its_own_test_set(tmp_path: Path) -> None:
    protocol = {"classifier": {"dataset": "digits"}, "n_real": 297, "pr_k": 3, "dc_k": 5, "n_floor": 1203}
    result = {"parzen_ll": 5.0, "parzen_se": 0.4, "sigma": 0.2, "dataset": "digits", "n_samples": 2000}
    result.update(checkpoint="outputs/quickstart/t/checkpoints/best.ckpt", metrics={"fid": 40.0})
    result["metrics_protocol"] = protocol
    (tmp_path / "results.json").write_text(json.dumps(result))
    text, _ = report([tmp_path])
    assert "| checkpoint outputs/quickstart/t/checkpoints/best.ckpt" in text
    assert "digits: samples vs the 297 digits test images, through the digits domain classifier" in text
    assert "the floor row: the first 1203 digits training images." in text  # fewer than the 2000 samples
    assert "MNIST" not in text.split("Beyond the paper")[1]


def test_settings_that_do_not_change_a_run_never_split_a_row(tmp_path: Path) -> None:
    """records.NOT_A_CHANGE, the list advnets-compare groups by too: logger, threads, ckpt_path are not changes."""
    base = json.loads((FIXTURES / "one_seed" / "results.json").read_text())
    for seed, extra in enumerate([["logger=csv"], ["threads=2", "ckpt_path=x.ckpt"], []]):
        run = tmp_path / f"s{seed}"
        run.mkdir()
        overrides = ["experiment=paper_mnist", "game.update=alternating", f"seed={seed}", *extra]
        (run / "results.json").write_text(json.dumps({**base, "seed": seed, "overrides": overrides}))
    rows = [r for r in table_rows(report([tmp_path])[0]) if r[0].startswith("paper_mnist")]
    assert [(r[0], r[3]) for r in rows] == [("paper_mnist (game.update=alternating)", "3 seeds")]


def test_report_and_compare_find_the_same_runs(tmp_path: Path) -> None:
    """One discovery (advnets.store.records): a folder without results.json is named, not silently left out."""
    from advnets.store.records import find_runs

    done = tmp_path / "done"
    shutil.copytree(FIXTURES / "one_seed", done)
    unfinished = tmp_path / "unfinished" / ".hydra"
    unfinished.mkdir(parents=True)
    (unfinished / "config.yaml").write_text("seed: 0\n")
    (unfinished.parent / "metrics.json").write_text(json.dumps({"diverged_at_epoch": 3}))
    _, skipped = report([tmp_path])
    assert skipped == [
        f"skipped {unfinished.parent}: no results.json (not evaluated: evaluate=false, diverged, or unfinished)"
    ]
    records, _ = find_runs([tmp_path])
    assert [r.path for r in records] == [done, unfinished.parent]
    assert records[0].overrides == ["experiment=paper_mnist"]  # a results.json alone: the overrides it recorded


def test_one_floor_row_per_dataset_unless_the_floors_differ(tmp_path: Path) -> None:
    """A training run (2,000 samples) and an advnets-eval (10,000) of one dataset: one real-vs-real row when
    their floors agree, one per sample count, named by it, when they do not."""
    base = {"parzen_ll": 5.0, "parzen_se": 0.4, "sigma": 0.2, "dataset": "digits", "metrics": {"fid": 40.0}}
    for n, (n_samples, floor) in enumerate([(2000, 4.2), (10000, 4.2)]):
        (tmp_path / f"r{n}").mkdir()
        record = {**base, "n_samples": n_samples, "seed": n, "metrics_reference": {"fid": floor}}
        (tmp_path / f"r{n}" / "results.json").write_text(json.dumps(record))
    floors = [r for r in table_rows(report([tmp_path])[0]) if r[0].startswith("*real vs real")]
    assert floors == [["*real vs real (training images as samples)*", "digits", "4.200"]]
    record = json.loads((tmp_path / "r1" / "results.json").read_text())
    (tmp_path / "r1" / "results.json").write_text(json.dumps({**record, "metrics_reference": {"fid": 3.9}}))
    floors = [r[0] for r in table_rows(report([tmp_path])[0]) if r[0].startswith("*real vs real")]
    assert floors == [
        "*real vs real (2000 training images as samples)*",
        "*real vs real (10000 training images as samples)*",
    ]


def test_the_floor_of_runs_on_several_seeds_is_one_row_their_mean(tmp_path: Path) -> None:
    """KID's subsets are drawn with each run's seed, so two seeds' floors differ in KID: one floor row, the mean."""
    base = {"parzen_ll": 5.0, "parzen_se": 0.4, "sigma": 0.2, "dataset": "digits", "n_samples": 2000}
    for seed, kid in ((1, 0.4), (2, 0.3)):
        (tmp_path / f"s{seed}").mkdir()
        record = {
            **base,
            "seed": seed,
            "metrics": {"fid": 40.0, "kid": 9.0},
            "metrics_reference": {"fid": 4.2, "kid": kid},
        }
        (tmp_path / f"s{seed}" / "results.json").write_text(json.dumps(record))
    floors = [r for r in table_rows(report([tmp_path])[0]) if r[0].startswith("*real vs real")]
    assert floors == [["*real vs real (training images as samples)*", "digits", "4.200", "0.350"]]


def test_repeats_of_one_seed_are_runs_not_seeds_and_epochs_trained_is_not_the_best_epoch(tmp_path: Path) -> None:
    """Two runs of seed 0 are not "2 seeds"; a run trained 300 epochs whose best checkpoint is epoch 260 says both."""
    base = json.loads((FIXTURES / "one_seed" / "results.json").read_text())
    for n, (seed, ll) in enumerate([(0, 170.0), (0, 180.0), (1, 190.0)]):
        (tmp_path / f"r{n}").mkdir()
        record = {**base, "seed": seed, "parzen_ll": ll, "epochs_trained": 300, "epoch": 260}
        (tmp_path / f"r{n}" / "results.json").write_text(json.dumps(record))
    text, _ = report([tmp_path])
    (detail,) = [r for r in table_rows(text) if r[0] == "paper_mnist"]
    assert detail[3] == "3 runs of 2 seeds (repeats)"
    assert detail[5:7] == ["300", "260"]
    assert detail[-1] == "0 ×2, 1 (repeats)"
    shutil.rmtree(tmp_path / "r1")
    (detail,) = [r for r in table_rows(report([tmp_path])[0]) if r[0] == "paper_mnist"]
    assert (detail[3], detail[-1]) == ("2 seeds", "0, 1")


def test_an_empty_cell_says_why() -> None:
    text, _ = report([FIXTURES / "one_seed"])
    assert "- epochs trained: — where results.json records none" in text  # the fixture records no epochs_trained
    assert "train hours: —" not in text  # it records its training time
