"""An ``@hydra.main`` entry point as advnets runs it: user mistakes become one line and exit status 2 (the nearest
known keys for a misspelt one), a job stopped by a signal exits with its status once Hydra's job-end hooks have run."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from advnets.errors import fail, find_user_error, one_line, refused_submission


class Entry:
    """``hydra_main`` wrapped: Hydra re-raises (HYDRA_FULL_ERROR), mistakes become one line (``config_name``: the
    entry point's config, for the nearest keys to a misspelt one); ``exit_status``, set by the job (a single run
    stopped by a signal: 130, 143), is the status the program exits with once Hydra returns."""

    def __init__(self, hydra_main: Callable[[], Any], config_name: str | None = None) -> None:
        functools.update_wrapper(self, hydra_main)
        self.hydra_main = hydra_main
        self.config_name = config_name
        self.exit_status: int | None = None

    def __call__(self) -> None:
        os.environ.setdefault("HYDRA_FULL_ERROR", "1")
        self.exit_status = None
        try:
            self.hydra_main()
        except KeyboardInterrupt:  # Ctrl-C before or after a run (a run stopped by it says so itself)
            raise SystemExit(130) from None
        except Exception as err:
            message = user_message(err, self.config_name)
            if message is None:
                raise
            from advnets.jobs.hydra_callbacks import UNSTARTED_SWEEP

            UNSTARTED_SWEEP.remove()
            fail(message)
        if self.exit_status:
            raise SystemExit(self.exit_status)


def cli(hydra_main: Callable[[], Any], config_name: str | None = None) -> Entry:
    """``hydra_main`` as advnets runs it (``Entry``)."""
    return Entry(hydra_main, config_name)


def user_message(err: BaseException, config_name: str | None = None) -> str | None:
    """``errors.one_line``, and for a key that is not in the config (Hydra's "Could not override"), the nearest
    known keys (``unknown_override``)."""
    if find_user_error(err) is None and refused_submission(err) is None:
        unknown = unknown_override(err, config_name)
        if unknown is not None:
            return unknown
    return one_line(err)


def unknown_override(err: BaseException, config_name: str | None) -> str | None:
    """Hydra's "Could not override 'KEY'" for a key that is not in the config: the nearest known keys (the
    config composed again without that override), and the ``+KEY`` hint only when no known key is close."""
    found = re.search(r"Could not override '([^']+)'", str(err))
    if found is None or config_name is None:
        return None
    from advnets.schema import did_you_mean, dotted_keys

    key = found.group(1)
    given = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
    value = next((a.split("=", 1)[1] for a in given if a.split("=", 1)[0] == key), "VALUE")
    cfg = composed(config_name, [a for a in given if a.split("=", 1)[0] != key])
    known = dotted_keys(cfg)
    if key in known:  # the key is there: its new value brings keys the node does not have
        return f"{key}={value}: new keys cannot be added inside {key} this way; add each with +{key}.NAME=VALUE"
    hint = did_you_mean(key, known)
    if hint:
        return f"unknown key {key}{hint}"
    parent, _, name = key.rpartition(".")
    node: Any = cfg
    for part in parent.split(".") if parent else []:
        node = node.get(part) if isinstance(node, dict) else None
    built = f", if {node['_target_']} takes {name}" if isinstance(node, dict) and "_target_" in node else ""
    return f"unknown key {key}: not in the config (to add a new key: +{key}={value}{built})"


def composed(config_name: str, overrides: list[str]) -> dict:
    """The config composed with ``overrides`` (or with none, if they do not compose), without ``hydra``, as plain
    data with its interpolations unresolved; ``{}`` if nothing composes."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from advnets import CONF_DIR

    plain = [o for o in overrides if "," not in o and "(" not in o]  # a sweep's values do not compose as one job
    for attempt in (plain, []):
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
                cfg = OmegaConf.to_container(compose(config_name, overrides=attempt), resolve=False)
        except Exception:
            continue
        finally:
            GlobalHydra.instance().clear()
        cfg.pop("hydra", None)  # type: ignore[union-attr]
        return cfg  # type: ignore[return-value]
    return {}
