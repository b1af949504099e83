"""``--help`` of the advnets entry points: what the command does, how to call it, and every config group with
its options, read from the config folder (no config is composed, nothing heavy is imported).

Hydra's own ``--help`` composes every group of the search path once per group (seconds); ``--hydra-help`` and
``--cfg job`` (the composed config) are still Hydra's."""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection
from pathlib import Path

from advnets.logs import output

SHOWN_HYDRA_GROUPS = ("hydra/launcher",)  # Hydra's groups a user of advnets picks


def config_groups(conf_dir: Path, shown_hydra_groups: Collection[str] = SHOWN_HYDRA_GROUPS) -> dict[str, list[str]]:
    """``{group: [options]}`` of a config folder: every folder of YAML files, ``hydra/`` ones only if shown."""
    groups: dict[str, list[str]] = {}
    for folder in sorted(p for p in conf_dir.rglob("*") if p.is_dir()):
        group = folder.relative_to(conf_dir).as_posix()
        if group.startswith("hydra") and group not in shown_hydra_groups:
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if options:
            groups[group] = options
    return groups


def composed_groups(conf_dir: Path, config_name: str) -> set[str]:
    """The groups a primary config composes: the names in its ``defaults`` list (``optional`` ones too)."""
    import yaml  # Hydra's own dependency; read as data, nothing composed

    defaults = (yaml.safe_load((conf_dir / f"{config_name}.yaml").read_text()) or {}).get("defaults") or []
    names = {str(next(iter(entry))) for entry in defaults if isinstance(entry, dict)}
    return {name.removeprefix("optional ").removeprefix("override ").lstrip("/") for name in names}


def user_config_dirs(argv: list[str]) -> list[Path]:
    """The folders ``--config-dir DIR`` (``-cd DIR``, ``--config-dir=DIR``) adds to Hydra's search path."""
    dirs = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(Path(argv[i + 1]))
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.split("=", 1)[1]))
    return [d for d in dirs if d.is_dir()]


def help_text(
    command: str,
    summary: str,
    usage: list[tuple[str, str]],
    conf_dir: Path,
    user_dirs: list[Path] | None = None,
    config_name: str | None = None,
    shown_hydra_groups: Collection[str] = SHOWN_HYDRA_GROUPS,
) -> str:
    """The help page: ``summary``, ``usage`` lines (call, what it does), the config groups (the package's and
    those of ``user_dirs``, the folders ``--config-dir`` adds; with ``config_name``, only those that config
    composes, and ``shown_hydra_groups`` of Hydra's), Hydra's flags."""
    width = max(len(call) for call, _ in usage)
    lines = [f"{command}: {summary}", "", "Usage:"]
    lines += [f"  {call.ljust(width)}  {what}" for call, what in usage]
    lines += ["", "Config groups (group=option):"]
    groups = config_groups(conf_dir, shown_hydra_groups)
    for folder in user_dirs or []:
        for group, options in config_groups(folder, shown_hydra_groups).items():
            groups[group] = sorted({*groups.get(group, []), *options})
    if config_name is not None:
        used = composed_groups(conf_dir, config_name) | set(shown_hydra_groups)
        groups = {group: options for group, options in groups.items() if group in used}
    lines += [f"{group}: {', '.join(options)}" for group, options in sorted(groups.items())]
    lines += [
        "",
        "Any key can be set (key=value) or added (+key=value); `--cfg job` prints the composed config.",
        "Hydra's flags: -m/--multirun, --cfg job|hydra|all, --resolve, --info, --config-dir DIR, --hydra-help.",
    ]
    return "\n".join(lines)


def with_help(
    entry: Callable[[], None],
    command: str,
    summary: str,
    usage: list[tuple[str, str]],
    config_name: str | None = None,
    shown_hydra_groups: Collection[str] = SHOWN_HYDRA_GROUPS,
) -> Callable[[], None]:
    """The entry point ``entry``, answering ``--help`` / ``-h`` itself (``help_text``) before Hydra starts; the
    groups listed are those ``config_name`` composes (all, without one)."""

    def main() -> None:
        if {"--help", "-h"} & set(sys.argv[1:]):
            from advnets import CONF_DIR

            dirs = user_config_dirs(sys.argv[1:])
            output(help_text(command, summary, usage, Path(CONF_DIR), dirs, config_name, shown_hydra_groups))
            return
        entry()

    return main
