"""``python -m collectives.reduce``: the root gets the reduction of all ranks' vectors."""

from collectives.cli import entry_points

run, main = entry_points("reduce")

if __name__ == "__main__":
    raise SystemExit(main())
