"""torch's intra-op thread count for a training process: the ``threads`` key.

``auto`` (the default) is one thread on the CPU: the quickstart and the paper's MNIST nets (fully connected, batch
100) gain nothing from more intra-op threads, and extra threads then compete with the data work and the logger's
service process for the same cores (``benchmarks/quickstart_threads.py`` measures it); on a GPU torch's own
count is kept. ``null`` keeps torch's own count everywhere; an integer sets it.
"""

from __future__ import annotations

AUTO = "auto"


def intra_op_threads(setting: int | str | None, on_gpu: bool) -> int | None:
    """The thread count to set for ``threads=setting``, or None to leave torch's own."""
    if setting is None:
        return None
    if setting == AUTO:
        return None if on_gpu else 1
    return int(setting)
