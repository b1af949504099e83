"""advnets: the 2014 Generative Adversarial Nets, reproduced with Lightning, Hydra and W&B."""

import os
from pathlib import Path

PACKAGE_CONF_DIR = (Path(__file__).parent / "conf").resolve()
"""The configs advnets ships: ``conf/`` at the top of the repository (``advnets/conf`` links to it), package data
``advnets/conf`` in a wheel."""
CONF_DIR = str(Path(os.environ.get("ADVNETS_CONF_DIR", PACKAGE_CONF_DIR)))
"""Hydra's primary config folder: the package's, or $ADVNETS_CONF_DIR (a whole config folder of one's own).
``--config-dir DIR`` (or ``hydra.searchpath``) adds a folder of one's own groups and options in front of it."""


def sweep_name(name: str) -> str:
    """``${advnets_sweep_name:${name}}``: the folder a multirun goes in, ``name`` (the experiment), or
    ``a+b`` for a sweep over experiments ``a`` and ``b`` (``experiments`` for another kind of sweep over them)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep

    if not HydraConfig.initialized():
        return name
    for text in HydraConfig.get().overrides.task:
        if text.split("=", 1)[0].lstrip("+") != "experiment":
            continue
        override = OverridesParser.create().parse_override(text)
        if override.is_sweep_override():
            sweep = override.value()
            return "+".join(map(str, sweep.list)) if isinstance(sweep, ChoiceSweep) else "experiments"
    return name


def _register_resolvers() -> None:
    """``${advnets_mode:NAME}`` / ``${advnets_direction:NAME}``: a registered metric's checkpoint mode / study
    direction (see advnets.metrics.registry), so no config file hard-codes which way is better;
    ``${advnets_metrics:}``: every metric of the registry's suite (``eval.metrics``' default), in its order;
    ``${advnets_sweep_name:NAME}`` (``sweep_name``)."""
    from omegaconf import OmegaConf

    # any import of advnets registers the resolvers, so every way of composing a config has them; no cycle:
    from advnets.metrics import registry  # upward: the configs' resolvers (the registry imports only errors)

    for name, fn in (("advnets_mode", registry.mode), ("advnets_direction", registry.direction)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    if not OmegaConf.has_resolver("advnets_metrics"):
        OmegaConf.register_new_resolver("advnets_metrics", lambda: list(registry.SUITE))
    if not OmegaConf.has_resolver("advnets_sweep_name"):
        # cached like ${now:}: the sweep resolves it first, and Hydra copies the cache into every job's config
        OmegaConf.register_new_resolver("advnets_sweep_name", sweep_name, use_cache=True)


_register_resolvers()
