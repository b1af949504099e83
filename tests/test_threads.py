"""``threads``: auto is one intra-op thread on the CPU (torch's own count on a GPU), null leaves torch's count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from advnets.threads import intra_op_threads

from conftest import train_quick


def test_auto_is_one_thread_on_the_cpu_and_torchs_own_on_a_gpu() -> None:
    assert intra_op_threads("auto", on_gpu=False) == 1
    assert intra_op_threads("auto", on_gpu=True) is None
    assert intra_op_threads(None, on_gpu=False) is None
    assert intra_op_threads(3, on_gpu=False) == 3


@pytest.mark.parametrize(("setting", "expected"), [("auto", 1), ("null", 2), ("3", 3)])
def test_a_cpu_run_trains_with_the_thread_count_its_setting_gives(tmp_path: Path, setting: str, expected: int) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # what torch's own count would be on a 2-core machine
    try:
        train_quick(tmp_path / "run", f"threads={setting}", "trainer.max_epochs=1", "logger=none", "evaluate=false")
        assert torch.get_num_threads() == expected
    finally:
        torch.set_num_threads(before)
