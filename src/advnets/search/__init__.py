"""Search spaces for the Optuna sweeper that its ``choice()`` / ``interval()`` syntax cannot state: parameters that
exist only under one choice of another (an optimizer's own settings). Each is a function ``(cfg, trial)`` named by
``hydra.sweeper.custom_search_space`` in an ``hparams_search`` config."""
