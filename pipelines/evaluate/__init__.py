"""Evaluation: scoring a model (and the champion alike), sample pictures, the evaluation key."""
