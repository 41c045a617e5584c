"""What the mesh shows of itself: heartbeats and instances, NATS micro answers, Prometheus
metrics, the catalog written back after a server restart."""
