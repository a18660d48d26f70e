"""``python -m collectives.reduce_scatter``: rank r gets block r of the reduction."""

from collectives.cli import entry_points

run, main = entry_points("reduce_scatter")

if __name__ == "__main__":
    raise SystemExit(main())
