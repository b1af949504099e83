"""advnets-compare and advnets.store.records on run folders written here (no training): grouping over seeds, mean ± SE,
the CSV/Markdown/PNG, and bad input (empty folder, half-finished run, mixed datasets, bad arguments)."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pytest
import yaml

from advnets.cli.compare import main
from advnets.store.records import find_runs, mean_se, parse_overrides

from conftest import run_advnets


def make_run(
    path: Path,
    *,
    seed: int = 0,
    overrides: tuple[str, ...] = (),
    dataset: str = "digits",
    ll: float | None = -7.5,
    curve: tuple[tuple[int, float], ...] = ((2, -9.0), (4, -8.0)),
    metrics: dict | None = None,
    finished: bool = True,
) -> Path:
    """A run folder as advnets-train leaves it (only the files compare reads)."""
    (path / ".hydra").mkdir(parents=True)
    config = {"name": "${hydra:runtime.choices.experiment}", "seed": seed, "dataset": {"name": dataset}}
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*overrides, f"seed={seed}"]))
    lines = ["epoch,step,val_parzen_ll,sigma", *[f"{e},{e * 24},{v},0.2" for e, v in curve]]
    (path / "val_curve.csv").write_text("\n".join(lines) + "\n")
    if not finished:
        return path
    (path / "metrics.json").write_text(json.dumps(metrics or {"val/parzen_ll": curve[-1][1] if curve else None}))
    if ll is not None:
        results = {"parzen_ll": ll, "parzen_se": 0.4, "sigma": 0.28, "dataset": dataset, "seed": seed}
        results["epochs_trained"] = curve[-1][0] if curve else 0
        (path / "results.json").write_text(json.dumps(results))
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_mean_se_is_the_standard_error_over_seeds() -> None:
    values = [-7.1, -7.9, -7.4]
    mean, se = mean_se(values)
    assert mean == pytest.approx(statistics.mean(values))
    assert se == pytest.approx(statistics.stdev(values) / math.sqrt(3))
    assert mean_se([-7.0]) == (-7.0, None)
    with pytest.raises(ValueError):
        mean_se([])


def test_find_runs_takes_run_folders_sweeps_and_parents_once_each(tmp_path: Path) -> None:
    sweep = tmp_path / "outputs" / "quickstart" / "multirun" / "2026-01-01_00-00-00"
    a = make_run(sweep / "0", seed=1)
    make_run(sweep / "1", seed=2)
    half = make_run(sweep / "2", seed=3, finished=False)
    (sweep / ".submitit" / "7_0").mkdir(parents=True)  # launcher folders are not searched
    records, skipped = find_runs([a, sweep, tmp_path / "outputs", a / "results.json"])
    assert [r.path for r in records] == [a, sweep / "1"]
    assert [(r.seed, r.dataset) for r in records] == [(1, "digits"), (2, "digits")]
    assert records[0].curve == [(2, -9.0), (4, -8.0)] and records[0].overrides == ["seed=1"]
    assert records[0].results["parzen_ll"] == -7.5 and records[0].metrics is not None
    assert skipped == [(half, skipped[0][1])] and skipped[0][1].startswith("half-finished run")
    assert "validation curve up to epoch 4" in skipped[0][1]


def test_find_runs_says_why_it_skips(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    bad = make_run(tmp_path / "bad")
    (bad / "results.json").write_text("{not json")
    records, skipped = find_runs([tmp_path / "empty", tmp_path / "other", tmp_path / "missing", bad])
    assert records == []
    reasons = dict(skipped)
    assert reasons[tmp_path / "empty"] == "empty folder"
    assert "no run folders" in reasons[tmp_path / "other"]
    assert reasons[tmp_path / "missing"] == "does not exist"
    assert reasons[bad].startswith("results.json is unreadable")


def test_a_resumed_curve_keeps_one_point_per_epoch(tmp_path: Path) -> None:
    run = make_run(tmp_path / "r", curve=((2, -9.0), (4, -8.0)))
    with (run / "val_curve.csv").open("a") as handle:  # a requeued job re-ran epoch 4 after its checkpoint
        handle.write("4,96,-7.5,0.2\n6,144,nan,0.2\n")
    (record,), _ = find_runs([run])
    assert record.curve == [(2, -9.0), (4, -7.5)]


def test_overrides_are_compared_by_value() -> None:
    assert parse_overrides(["optimizer.lr=1e-3"]) == parse_overrides(["optimizer.lr=0.001"])
    assert parse_overrides(["+x=1", "~y", "game.update=joint"]) == {"x": 1, "y": None, "game.update": "joint"}


def test_compare_groups_seeds_and_reports_mean_and_se(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    lls = {1: -7.2, 2: -7.8, 3: -7.5}
    for seed, ll in lls.items():
        make_run(sweep / f"joint{seed}", seed=seed, ll=ll, overrides=("game.update=joint", "optimizer.lr=1e-3"))
    # lr written differently, threads differ: still the same group as far as results go
    make_run(sweep / "alt1", seed=1, ll=-9.0, overrides=("game.update=alternating", "optimizer.lr=0.001", "threads=2"))
    alt3 = ("game.update=alternating", "optimizer.lr=0.001", "logger=csv", "ckpt_path=a.ckpt")
    make_run(sweep / "alt3", seed=3, ll=-8.5, overrides=alt3)
    make_run(sweep / "alt2", seed=2, ll=-8.0, overrides=("game.update=alternating", "optimizer.lr=0.001"))
    main([str(sweep)])
    out = capsys.readouterr().out
    assert "advnets-compare: digits" in out and "game.update" in out and "optimizer.lr" not in out
    rows = _rows(sweep / "compare.csv")
    assert [(r["game.update"], r["runs"], r["seeds"]) for r in rows] == [
        ("joint", "3", "1,2,3"),
        ("alternating", "3", "1,2,3"),  # logger, threads (records.NOT_A_CHANGE) never split a group
    ]
    mean, se = mean_se(list(lls.values()))
    assert float(rows[0]["test_parzen_ll_mean"]) == pytest.approx(mean)
    assert float(rows[0]["test_parzen_ll_se"]) == pytest.approx(se)
    assert float(rows[0]["best_val_parzen_ll_mean"]) == pytest.approx(-8.0)
    assert rows[0]["epochs"] == "4" and rows[0]["diverged"] == "0"
    md = (sweep / "compare.md").read_text()
    assert "## digits" in md and f"{mean:.3f} ± {se:.3f}" in md  # 4 significant digits
    assert (sweep / "compare_val_parzen.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(_rows(sweep / "compare_runs.csv")) == 6
    make_run(sweep / "joint1again", seed=1, ll=-7.0, overrides=("game.update=joint", "optimizer.lr=1e-3"))
    main([str(sweep)])
    assert _rows(sweep / "compare.csv")[0]["seeds"] == "1 ×2,2,3 (repeats)"  # a repeat is a run, not a seed
    capsys.readouterr()


def _with_metrics(run: Path, own: dict[str, float]) -> Path:
    """``run``'s results.json with FID and the metrics of one's own ``own``, as evaluation records them."""
    results = json.loads((run / "results.json").read_text())
    results["metrics"] = {"fid": 9.0, **own}
    protocol = {"n_fake": 300, "higher_is_better": {"fid": False, **dict.fromkeys(own, False)}}
    protocol["own_metrics"] = {n: {"title": n.replace("_", " "), "higher_is_better": False} for n in own}
    results["metrics_protocol"] = protocol
    (run / "results.json").write_text(json.dumps(results))
    return run


def test_a_run_without_evaluation_is_no_other_protocol(tmp_path: Path) -> None:
    """A pruned trial (or evaluate=false) has no results.json: it joins its setting's group and adds no column."""
    runs = tmp_path / "sweep"
    make_run(runs / "0", seed=1, ll=-7.0)
    make_run(runs / "1", seed=2, ll=None, metrics={"val/parzen_ll": -8.0, "pruned_at_epoch": 2})
    main([str(runs)])
    (row,) = _rows(runs / "compare.csv")
    assert "protocol" not in row and (row["runs"], row["seeds"]) == ("2", "1,2")
    assert (row["test_parzen_ll_mean"], row["test_parzen_ll_n"]) == ("-7.0", "1")  # the one run evaluated


def test_a_metric_of_ones_own_neither_splits_runs_nor_fills_another_datasets_table(tmp_path: Path) -> None:
    """Two seeds of one setting, one also scored by a metric of one's own: one group. A run choosing eval=own is
    a row of its own, its choice in one eval column. The metric's column only where a dataset's runs hold it."""
    runs = tmp_path / "runs"
    _with_metrics(make_run(runs / "plain", seed=1), {})
    extra = "+eval.extra_metrics.mean_gap={_target_:my.MeanGap}"
    _with_metrics(make_run(runs / "extra", seed=2, overrides=(extra,)), {"mean_gap": 0.5})
    _with_metrics(make_run(runs / "own", seed=3, overrides=("eval=own",)), {"mean_gap": 0.25})
    _with_metrics(make_run(runs / "other", dataset="mnist"), {})
    main([str(runs)])
    digits = [r for r in _rows(runs / "compare.csv") if r["dataset"] == "digits"]
    assert sorted((r["eval"], r["runs"], r["seeds"]) for r in digits) == [("", "2", "1,2"), ("own", "1", "3")]
    md = (runs / "compare.md").read_text()
    table, mnist = md.split("## mnist")
    header = next(line for line in table.splitlines() if line.startswith("| "))
    assert header.count("| eval |") == 1 and "mean gap" in header and "| own |" in table
    assert not [line for line in mnist.splitlines() if line.startswith("|") and "mean gap" in line]
    assert "mean gap is" not in md


def test_compare_on_bad_input_says_what_it_skipped_and_reports_the_rest(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_run(runs / "a", seed=1, ll=-7.0)
    make_run(runs / "b", seed=2, ll=-8.0)
    half = make_run(runs / "c", seed=3, finished=False)
    make_run(runs / "mnist", seed=1, dataset="mnist", ll=210.0, curve=((5, 180.0), (10, 200.0)))
    diverged = make_run(
        runs / "nan", seed=4, ll=None, curve=(), metrics={"diverged_at_epoch": 1, "val/parzen_ll": -1.0e6}
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "report"
    proc = run_advnets("compare", str(runs), str(empty), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert f"skipped {half}: half-finished run" in text
    assert f"skipped {empty}: empty folder" in text
    assert "different datasets (digits, mnist)" in text and "not comparable" in text
    assert "advnets-compare: digits" in text and "advnets-compare: mnist" in text
    rows = _rows(out / "compare.csv")
    assert {r["dataset"]: r["runs"] for r in rows} == {"digits": "3", "mnist": "1"}
    digits = next(r for r in rows if r["dataset"] == "digits")
    assert digits["diverged"] == "1" and digits["test_parzen_ll_n"] == "2"  # the diverged run has no score
    assert float(digits["test_parzen_ll_mean"]) == pytest.approx(-7.5)
    mnist = next(r for r in rows if r["dataset"] == "mnist")
    assert mnist["test_parzen_ll_se"] == "" and float(mnist["test_parzen_ll_mean"]) == 210.0  # one seed: no SE
    md = (out / "compare.md").read_text()
    assert "## digits" in md and "## mnist" in md and f"skipped {half}: half-finished run" in md
    assert str(diverged) in (out / "compare_runs.csv").read_text()


@pytest.mark.parametrize(
    "args,message",
    [
        (["{tmp}/missing"], "does not exist"),
        (["{tmp}/empty"], "no finished runs in"),
        (["{tmp}/empty", "--metric", "fid"], "invalid choice: 'fid'"),
        ([], "the following arguments are required: PATH"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(tmp=tmp_path) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("advnets: error: ") and message in err and "\n" not in err


def test_unwritable_out_is_a_one_line_error(tmp_path: Path) -> None:
    make_run(tmp_path / "runs" / "a")
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = run_advnets("compare", str(tmp_path / "runs"), "--out", str(blocker / "sub"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("advnets: error: cannot write to --out") and proc.stderr.count("\n") == 1


def test_the_terminal_table_fits_the_terminal_and_the_files_keep_every_column(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite = {"fid": 40.0, "kid": 1.2, "precision": 0.8, "recall": 0.4, "density": 0.9, "coverage": 0.7}
    for seed in (1, 2):
        for lr in ("1e-3", "2e-3"):
            run = make_run(tmp_path / f"lr{lr}_{seed}", seed=seed, overrides=(f"optimizer.lr={lr}",))
            results = json.loads((run / "results.json").read_text())
            (run / "results.json").write_text(json.dumps({**results, "metrics": suite}))
    monkeypatch.setenv("COLUMNS", "80")
    main([str(tmp_path)])
    out = capsys.readouterr().out
    table = out.split("advnets-compare: wrote")[0]  # the last line names the output folder, a path of any length
    assert max(len(line) for line in table.splitlines()) <= 80, out
    assert "more columns in compare.md / compare.csv" in out
    assert "test LL" in out and "best val LL" in out  # the headline columns come first
    assert "coverage_mean" in (tmp_path / "compare.csv").read_text().splitlines()[0].replace(
        "test_coverage", "coverage"
    )


def _figure(paths: list[Path]):
    from advnets.cli.compare import figure, group_runs

    records, _ = find_runs(paths)
    groups, _ = group_runs(records)
    return figure(groups)


def test_the_plot_names_groups_by_their_runs_labels_and_shades_se_only_over_several_runs(tmp_path: Path) -> None:
    one = make_run(tmp_path / "one", overrides=("game.update=alternating",), curve=((1, -9.0), (2, -8.5), (3, -8.0)))
    results = json.loads((one / "results.json").read_text())
    (one / "results.json").write_text(json.dumps({**results, "label": "variant: alternating"}))
    for seed in (1, 2):
        make_run(tmp_path / f"joint{seed}", seed=seed, overrides=("game.update=joint",), curve=((1, -9.5), (3, -8.8)))
    fig = _figure([tmp_path])
    (ax,) = fig.axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(legend) == ["game.update=joint (mean ± SE over 2 runs)", "variant: alternating"]
    assert len(ax.collections) == 1  # one band: the group of two seeds; none for the single run
    assert all(float(t).is_integer() for t in ax.get_xticks())  # whole epochs
    assert ax.get_ylabel() == "nats (mean ± SE over seeds)"


def test_a_collapsed_curve_is_named_and_kept_out_of_the_y_range(tmp_path: Path) -> None:
    for lr, curve in [("1e-3", ((2, -100.0), (4, 50.0))), ("2e-3", ((2, -90.0), (4, 80.0)))]:
        make_run(tmp_path / lr, overrides=(f"optimizer.lr={lr}",), curve=curve)
    make_run(tmp_path / "down", overrides=("optimizer.lr=0.0003603658181909613",), curve=((2, -80.0), (4, -600.0)))
    (ax,) = _figure([tmp_path]).axes
    low, high = ax.get_ylim()
    assert -120 < low < -100 and 80 < high < 100  # the good curves fill the panel
    legend = [" ".join(t.get_text().split()) for t in ax.get_legend().get_texts()]  # wrapped lines joined
    collapsed = [t for t in legend if "collapsed" in t]
    assert collapsed == ["optimizer.lr=0.0003604 — collapsed: down to -600.0 nats, below the axis"]
    assert ax.get_ylabel() == "nats"  # one run per group: no SE anywhere
    main([str(tmp_path)])
    md = (tmp_path / "compare.md").read_text()
    assert "optimizer.lr=0.0003604 — collapsed" in md and "one run per group, so no ± over seeds" in md
    assert "0.0003603658" not in md  # 4 significant digits on show
    assert "0.0003603658181909613" in (tmp_path / "compare.csv").read_text()  # the exact value kept


def test_an_empty_plot_and_empty_columns_say_why(tmp_path: Path) -> None:
    for seed in (1, 2):
        run = make_run(tmp_path / f"r{seed}", seed=seed)
        (run / "val_curve.csv").unlink()
    (ax,) = _figure([tmp_path]).axes
    (text,) = [t.get_text().replace("\n", " ") for t in ax.texts]
    assert text.startswith("no validation curve: no run has a val_curve.csv (the validation Parzen monitor was off")
    assert not ax.axison  # no empty 0-1 axes
    main([str(tmp_path)])
    md = (tmp_path / "compare.md").read_text()
    assert "digits: best val LL is — for every run: no run has a val_curve.csv" in md
    assert "digits: test LL is —" not in md
