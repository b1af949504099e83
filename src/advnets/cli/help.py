"""``--help`` of the advnets entry points: what the command does, how to call it, and every config group with
its options, read from the config folder (no config is composed, nothing heavy is imported).

Hydra's own ``--help`` composes every group of the search path once per group (seconds); ``--hydra-help`` and
``--cfg job`` (the composed config) are still Hydra's."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from advnets.logs import output

SHOWN_HYDRA_GROUPS = ("hydra/launcher",)  # Hydra's groups a user of advnets picks


def config_groups(conf_dir: Path) -> dict[str, list[str]]:
    """``{group: [options]}`` of a config folder: every folder of YAML files, ``hydra/`` ones only if shown."""
    groups: dict[str, list[str]] = {}
    for folder in sorted(p for p in conf_dir.rglob("*") if p.is_dir()):
        group = folder.relative_to(conf_dir).as_posix()
        if group.startswith("hydra") and group not in SHOWN_HYDRA_GROUPS:
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if options:
            groups[group] = options
    return groups


def help_text(command: str, summary: str, usage: list[tuple[str, str]], conf_dir: Path) -> str:
    """The help page: ``summary``, ``usage`` lines (call, what it does), the config groups, Hydra's flags."""
    width = max(len(call) for call, _ in usage)
    lines = [f"{command}: {summary}", "", "Usage:"]
    lines += [f"  {call.ljust(width)}  {what}" for call, what in usage]
    lines += ["", "Config groups (group=option):"]
    lines += [f"{group}: {', '.join(options)}" for group, options in config_groups(conf_dir).items()]
    lines += [
        "",
        "Any key can be set (key=value) or added (+key=value); `--cfg job` prints the composed config.",
        "Hydra's flags: -m/--multirun, --cfg job|hydra|all, --resolve, --info, --config-dir DIR, --hydra-help.",
    ]
    return "\n".join(lines)


def with_help(
    entry: Callable[[], None], command: str, summary: str, usage: list[tuple[str, str]]
) -> Callable[[], None]:
    """The entry point ``entry``, answering ``--help`` / ``-h`` itself (``help_text``) before Hydra starts."""

    def main() -> None:
        if {"--help", "-h"} & set(sys.argv[1:]):
            from advnets import CONF_DIR

            output(help_text(command, summary, usage, Path(CONF_DIR)))
            return
        entry()

    return main
