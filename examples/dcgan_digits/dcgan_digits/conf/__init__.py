"""The configs of this package: hydra.searchpath=[pkg://dcgan_digits.conf], or --config-dir this folder."""
