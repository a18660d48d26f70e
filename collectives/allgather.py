"""``python -m collectives.allgather``: every rank gets all ranks' blocks, in rank order."""

from collectives.cli import entry_points

run, main = entry_points("allgather")

if __name__ == "__main__":
    raise SystemExit(main())
