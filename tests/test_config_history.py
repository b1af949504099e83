"""A run folder's config history: every start gets its own entry, also several starts in one second."""

from __future__ import annotations

from pathlib import Path

import pytest

from advnets.jobs import hydra_callbacks
from advnets.jobs.hydra_callbacks import _move_to_history, _new_history_entry


@pytest.fixture
def one_second(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every start in the same second, as when starts are killed in quick succession."""
    monkeypatch.setattr(hydra_callbacks, "_stamp", lambda: "2026-01-01_00-00-00")
    return "2026-01-01_00-00-00"


def _record(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(text)
    return folder


def test_starts_in_one_second_each_keep_their_own_entry(tmp_path: Path, one_second: str) -> None:
    history = tmp_path / ".hydra" / "history"
    for n in range(3):
        _move_to_history(_record(tmp_path / f"stash{n}", f"start {n}"), history, "-before-a-killed-start")
    for n in range(3):
        _move_to_history(_record(tmp_path / f"kept{n}", f"kept {n}"), history)
    names = sorted(p.name for p in history.iterdir())
    assert names == sorted(
        [f"{one_second}{s}" for s in ("", "-2", "-3")]
        + [f"{one_second}{s}-before-a-killed-start" for s in ("", "-2", "-3")]
    )
    texts = sorted((p / "config.yaml").read_text() for p in history.iterdir())
    assert texts == sorted([f"start {n}" for n in range(3)] + [f"kept {n}" for n in range(3)])


def test_a_multirun_start_claims_a_new_entry(tmp_path: Path, one_second: str) -> None:
    history = tmp_path / "history"
    first, second = _new_history_entry(history), _new_history_entry(history)
    assert (first.name, second.name) == (one_second, f"{one_second}-2")
    assert first.is_dir() and second.is_dir()
