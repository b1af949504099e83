"""Configs that came with a checkpoint, a published generator or a run folder are data: before anything is built
from one, every ``_target_`` in it (at any depth) must be a class or function advnets' own configs name, or one
the user's own configs name (``ADVNETS_CONF_DIR``, ``--config-dir``, ``hydra.searchpath``, the job's own config),
and every ``${resolver:...}`` in it must be one advnets' own configs use. Anything else is refused in one line
naming the target and the file, before any import or call.

Nothing here imports torch: ``advnets-eval`` checks a folder before torch loads.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from advnets import CONF_DIR, PACKAGE_CONF_DIR
from advnets.errors import UserError

_RESOLVER = re.compile(r"\$\{\s*([^\s:{}$]+)\s*:")
"""The name of a resolver call, ``${name:...}``, anywhere in a string (nested calls included)."""

MOVED = {"advnets.runs.loggers.TensorBoardLogger": "advnets.store.loggers.TensorBoardLogger"}
"""Targets a run folder of an earlier advnets version names (``logger=tensorboard``), and their names now."""

_HOW = (
    "a config that came with a checkpoint or run folder builds only what advnets' own configs name, or your own "
    "configs (ADVNETS_CONF_DIR, --config-dir DIR, hydra.searchpath)"
)


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """``(dotted key, key, value)`` of every entry of a plain container, depth first, list items as ``key[i]``."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            yield here, key, value
            yield from _walk(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            here = f"{path}[{i}]"
            yield here, i, value
            yield from _walk(value, here)


def named_targets(data: Any) -> set[str]:
    """Every string ``_target_`` value in a plain container."""
    return {v for _, k, v in _walk(data) if k == "_target_" and isinstance(v, str)}


def used_resolvers(data: Any) -> set[str]:
    """Every resolver name a string value (or key) of a plain container calls."""
    found: set[str] = set()
    for _, key, value in _walk(data):
        for text in (key, value):
            if isinstance(text, str):
                found.update(_RESOLVER.findall(text))
    return found


def _yaml_files(folder: Path) -> Iterable[Path]:
    return sorted(folder.rglob("*.yaml")) if folder.is_dir() else []


def _folder_contents(folder: Path) -> tuple[set[str], set[str]]:
    """The targets and resolvers the YAML files under ``folder`` name (a file that does not parse adds nothing)."""
    targets: set[str] = set()
    resolvers: set[str] = set()
    for path in _yaml_files(folder):
        try:
            data = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            continue
        targets |= named_targets(data)
        resolvers |= used_resolvers(data)
    return targets, resolvers


@functools.cache
def shipped() -> tuple[frozenset[str], frozenset[str]]:
    """The targets and resolvers advnets' own configs (``conf/``) name."""
    targets, resolvers = _folder_contents(PACKAGE_CONF_DIR)
    return frozenset(targets), frozenset(resolvers)


def _source_folder(schema: str, path: str) -> Path | None:
    """The folder of a Hydra config source: ``file://DIR``, or ``pkg://PACKAGE`` (the user's package, found as
    Hydra finds it)."""
    if schema == "file":
        return Path(path)
    if schema == "pkg" and path:
        try:
            spec = importlib.util.find_spec(path.replace("/", "."))
        except (ImportError, ValueError):
            return None
        locations = list(spec.submodule_search_locations or []) if spec else []
        return Path(locations[0]) if locations else None
    return None


def user_config_folders() -> list[Path]:
    """The user's own config folders on this Hydra job's search path (``--config-dir``, ``hydra.searchpath``, a
    primary folder other than the package's), or ``ADVNETS_CONF_DIR`` outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    folders = [Path(CONF_DIR)] if Path(CONF_DIR) != PACKAGE_CONF_DIR else []
    if not HydraConfig.initialized():
        return folders
    for source in HydraConfig.get().runtime.config_sources:
        if source.provider == "main" or source.provider == "command-line" or "searchpath" in source.provider:
            folder = _source_folder(source.schema, source.path)
            if folder is not None and folder.resolve() != PACKAGE_CONF_DIR and folder not in folders:
                folders.append(folder)
    return folders


def allowed(user_folders: Iterable[Path] = (), own_config: Any = None) -> tuple[set[str], set[str]]:
    """The targets and resolvers a foreign config may use: advnets' own, those of ``user_folders`` and of the job's
    own config ``own_config`` (what the user composed: their command line and config files)."""
    targets, resolvers = (set(found) for found in shipped())
    for folder in user_folders:
        more_targets, more_resolvers = _folder_contents(folder)
        targets |= more_targets
        resolvers |= more_resolvers
    if own_config is not None:
        data = OmegaConf.to_container(own_config, resolve=False) if isinstance(own_config, DictConfig) else own_config
        targets |= named_targets(data)
    return targets, resolvers


def check_foreign(config: Any, source: Path, targets: set[str], resolvers: set[str]) -> None:
    """Refuse ``config`` (read from ``source``, a file that came with a checkpoint or run folder) if it names a
    target outside ``targets`` or calls a resolver outside ``resolvers``; a one-line UserError naming both."""
    data = OmegaConf.to_container(config, resolve=False) if isinstance(config, DictConfig) else config
    for path, key, value in _walk(data):
        if key == "_target_" and (not isinstance(value, str) or value not in targets or "${" in value):
            raise UserError(f"refused to build {value!r} ({path} in {source}): {_HOW}; nothing was built")
    unknown = sorted(used_resolvers(data) - resolvers)
    if unknown:
        raise UserError(
            f"refused to resolve ${{{unknown[0]}:...}} in {source}: a config that came with a checkpoint or run "
            f"folder may call only the resolvers advnets' own configs use ({', '.join(sorted(resolvers))})"
        )


def load_foreign_config(path: Path, user_folders: Iterable[Path] = (), own_config: Any = None) -> DictConfig:
    """A run's config from a file that came with a checkpoint or run folder: parsed as data (YAML's safe loader),
    checked by ``check_foreign`` against what ``allowed`` admits, refused in one line if it is not a mapping."""
    try:
        config = OmegaConf.load(path)
    except Exception as err:  # yaml's and OmegaConf's many parse errors
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(f"cannot read run config {path}: {first}") from None
    if not isinstance(config, DictConfig):
        raise UserError(f"{path} is not a run config (a YAML mapping with dataset, model, game)")
    data = OmegaConf.to_container(config, resolve=False)
    if any(key == "_target_" and isinstance(value, str) and value in MOVED for _, key, value in _walk(data)):
        config = OmegaConf.create(_renamed(data))
    targets, resolvers = allowed(user_folders, own_config)
    check_foreign(config, path, targets, resolvers)
    return config


def _renamed(node: Any) -> Any:
    """A plain container with every ``_target_`` that ``MOVED`` lists given its present name."""
    if isinstance(node, dict):
        return {k: MOVED.get(v, v) if k == "_target_" and isinstance(v, str) else _renamed(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_renamed(v) for v in node]
    return node
