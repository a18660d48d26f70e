"""``python -m collectives.alltoall``: block j of rank i's buffer goes to block i of rank j."""

from collectives.cli import entry_points

run, main = entry_points("alltoall")

if __name__ == "__main__":
    raise SystemExit(main())
