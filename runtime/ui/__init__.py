"""`mesh-runtime ui`: a web page that shows the mesh, calls it and follows its runs.

A client like `status`: it reads the catalog, the registry, the NATS micro STATS and the
run journal over NATS, and keeps nothing of its own. Needs the `ui` extra
(`pip install 'mesh-runtime[ui]'`).
"""
