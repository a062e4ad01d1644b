"""The dg defs folder: one component, ``liberation/defs.yaml``, that loads the spec file."""
