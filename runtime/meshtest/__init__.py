"""`mesh-runtime test`: YAML test files, their checks, stubs and the run against a real mesh."""
