"""Where an Optuna sweep's study lives (``hydra.sweeper.storage``): its URL, whether it is SQLite (one sweeper at a
time) and the heartbeat settings of a server shared by several sweepers (advnets.jobs.study_storage)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TARGET = "advnets.jobs.study_storage.open_storage"
HEARTBEAT_INTERVAL_S = 60
GRACE_PERIOD_S = 180


def is_sqlite(url: str) -> bool:
    """Whether a storage URL names a SQLite file (``sqlite:///PATH``, also with a driver: ``sqlite+pysqlite``)."""
    return url.startswith("sqlite")


def with_driver(url: str) -> str:
    """A ``postgresql://`` URL with the PostgreSQL driver that is installed: psycopg 3 (``advnets[cluster]``,
    SQLAlchemy 2.1's default), else psycopg2 (SQLAlchemy 2.0's default); any other URL as it is."""
    import importlib.util

    if not url.startswith("postgresql://"):
        return url
    for module in ("psycopg", "psycopg2"):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{module}://" + url.removeprefix("postgresql://")
    return url


def storage_url(node: Any) -> str | None:
    """The database URL of ``hydra.sweeper.storage``: the URL itself, or the ``url`` of an ``open_storage`` node."""
    if node is None:
        return None
    if isinstance(node, str):
        return node
    url = node.get("url") if hasattr(node, "get") else None
    return str(url) if url else None


def heartbeat_node(url: str) -> dict[str, Any]:
    """The ``hydra.sweeper.storage`` node that opens ``url`` with heartbeats (the default intervals)."""
    return {
        "_target_": TARGET,
        "url": url,
        "heartbeat_interval": HEARTBEAT_INTERVAL_S,
        "grace_period": GRACE_PERIOD_S,
    }


def sqlite_file(storage: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` storage URL, else None."""
    return Path(storage.removeprefix("sqlite:///")) if storage.startswith("sqlite:///") else None
