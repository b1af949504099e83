"""advnets: the 2014 Generative Adversarial Nets, reproduced with Lightning, Hydra and W&B."""

import os
from pathlib import Path

CONF_DIR = str(Path(os.environ.get("ADVNETS_CONF_DIR", Path(__file__).resolve().parents[2] / "conf")))
"""Hydra's config folder: the checkout's ``conf/`` (the package is installed editable), or $ADVNETS_CONF_DIR."""


def _register_resolvers() -> None:
    """``${advnets_mode:NAME}`` / ``${advnets_direction:NAME}``: a registered metric's checkpoint mode / study
    direction (see advnets.metrics.registry), so no config file hard-codes which way is better."""
    from omegaconf import OmegaConf

    from advnets.metrics import registry

    for name, fn in (("advnets_mode", registry.mode), ("advnets_direction", registry.direction)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


_register_resolvers()
