"""advnets' Hydra configs. In a checkout they live here, at the top; a built wheel ships them as ``advnets/conf``."""
