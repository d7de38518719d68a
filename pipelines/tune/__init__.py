"""Sweeps: Ray Tune over variants of a model, each trial the training loop on one process."""
