"""Triggers: messages that start requests by themselves (a subject, a JetStream stream, a KV
bucket, a schedule, another agent's events), applied as a difference like the rest."""
