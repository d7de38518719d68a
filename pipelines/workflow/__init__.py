"""Durable workflows: the runner, the steps and their typed results, pre-flight checks, and the
Python API (`pipelines.workflow.api`) that the CLI itself calls."""
