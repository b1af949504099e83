"""What a training job hands back through Hydra: its score, and what its entry point and Hydra's job-end hooks
learn from it. Nothing heavy is imported: the Hydra callbacks read it before torch loads."""

from __future__ import annotations


class Score(float):
    """A job's objective (what a sweeper optimises), with ``untouched``: its run folder held this finished run and
    was left exactly as it was (no record of this start is kept); ``exit_status``: a single run stopped by a
    signal (130: SIGINT, 143: SIGTERM), which its entry point exits with once Hydra's job-end hooks have run."""

    untouched: bool = False
    exit_status: int | None = None

    @classmethod
    def of(cls, value: float, untouched: bool = False, exit_status: int | None = None) -> Score:
        score = cls(value)
        score.untouched = untouched
        score.exit_status = exit_status
        return score
