"""The NATS side: connecting, the embedded nats-server, calling agents, the CLI's client."""
