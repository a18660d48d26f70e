"""The ground layer: who am I under any launcher (:mod:`ground.env`), the harness's control
communicator (:mod:`ground.comm`, with :mod:`ground.mismatch`), exit statuses and one-line errors
(:mod:`ground.errors`), progress bars (:mod:`ground.progress`), dtypes and ops
(:mod:`ground.dtypes`) and message sizes (:mod:`ground.sizes`).

Every other package may import it; it imports no other package of the project
(docs/ARCHITECTURE.md, "Package order")."""
