"""What a run leaves on disk, at the bottom of advnets: crash-safe writes (atomic), safe checkpoint loading
(checkpoints), where a run came from (provenance), reading finished runs back (records), what goes to the loggers
(loggers) and where an Optuna study lives (studies). Nothing here imports advnets above ``errors`` and ``logs``."""
