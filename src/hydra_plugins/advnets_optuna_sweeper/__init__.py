"""advnets' Optuna sweeper for Hydra (``hydra/sweeper=optuna``): Optuna's ask/tell over a study in a database,
with pruning, continuation and a readable table of the study at the end of every sweep."""
