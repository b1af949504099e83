"""Jobs as Hydra runs them, above training: the Hydra callbacks that guard a run folder and a sweep
(hydra_callbacks), a sweep's search space (search_space), what a sweep asks of SLURM (slurm_request), an Optuna
study's database (study_storage), and what advnets-eval and publishing take from elsewhere (eval_inputs, trusted,
generator)."""
