"""Run-folder plumbing: the folder a run owns (folders), reading finished runs back (records), crash-safe writes
(atomic), safe checkpoint loading (checkpoints) and the Hydra callbacks that guard a run folder (hydra_callbacks)."""
