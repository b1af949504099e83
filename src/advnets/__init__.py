"""advnets: the 2014 Generative Adversarial Nets, reproduced with Lightning, Hydra and W&B."""

import os
from pathlib import Path

CONF_DIR = str(Path(os.environ.get("ADVNETS_CONF_DIR", Path(__file__).resolve().parents[2] / "conf")))
"""Hydra's config folder: the checkout's ``conf/`` (the package is installed editable), or $ADVNETS_CONF_DIR."""
