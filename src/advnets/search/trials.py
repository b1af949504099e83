"""What the sweeper and a trial's job tell each other (nothing heavy imported: the sweeper's config, the study
report and advnets-compare read these without torch)."""

TRIAL_ID_ENV = "ADVNETS_OPTUNA_TRIAL_ID"  # set for each job by the sweeper (hydra.job.env_set)
PRUNED_ATTR = "pruned_at_epoch"  # the trial's user attribute a pruned job sets: the epoch it stopped after
EPOCHS_ATTR = "epochs_trained"  # the trial's user attribute every job sets when its training ends
RUN_FOLDER_ATTR = "run_folder"  # the trial's user attribute the sweeper sets: its job's run folder
