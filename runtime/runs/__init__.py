"""Runs: the journal of every pipeline run, and durable runs (runtime.runs.durable)."""
