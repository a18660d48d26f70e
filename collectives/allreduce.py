"""``python -m collectives.allreduce``: every rank gets the reduction of all ranks' vectors."""

from collectives.cli import entry_points

run, main = entry_points("allreduce")

if __name__ == "__main__":
    raise SystemExit(main())
