"""Control plane: compiles intent into per-host device graphs and keeps hosts converged.

Contract: ``compile`` is pure (spec -> per-host graphs, incrementally); the store (embedded SQLite or
etcd v3) holds desired and realized state with revisions and watch; one agent per host reconciles a
data-plane backend; the controller serves the REST API.
"""
