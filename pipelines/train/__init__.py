"""Training: the Ray Train driver, the worker's loop, DeepSpeed engines, checkpoints, op pre-build."""
