"""Pipelines: the YAML spec, load-time compilation and checks, expressions, running steps, graphs."""
