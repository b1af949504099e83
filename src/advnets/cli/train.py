"""``advnets-train``: compose the config with Hydra and run one training job (``advnets.training.run``).

Only Hydra and the config check are imported here: a mistake in the config is reported before torch and
Lightning load (``advnets.training`` imports them when a job really starts)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from advnets import CONF_DIR
from advnets.errors import cli


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    from advnets.schema import TRAIN, validate

    validate(cfg, TRAIN, targets=False)  # the plain keys' rules: no imports of the built classes yet
    from advnets.training import run

    return run(cfg)


main = cli(hydra_main, config_name="train")


if __name__ == "__main__":
    main()
