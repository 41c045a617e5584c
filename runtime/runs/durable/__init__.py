"""Durable runs: leases, pinned definitions, run keys, parking, and resuming after a crash."""
