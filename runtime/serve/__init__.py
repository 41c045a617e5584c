"""Serving a Mesh on NATS: the server, each agent's service, catalog, deadlines, reload, the runner."""
