"""MLflow: tracking runs, registering versions, the champion/challenger gate."""
