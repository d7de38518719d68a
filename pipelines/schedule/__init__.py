"""Recurring runs: cron schedules, claimed slots, and how a due slot is launched."""
