"""mesh.yaml to a checked, immutable Mesh: YAML with positions, the model, schemas, handlers."""
