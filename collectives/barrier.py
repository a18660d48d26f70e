"""``python -m collectives.barrier``: no rank leaves before every rank has entered."""

from collectives.cli import entry_points

run, main = entry_points("barrier")

if __name__ == "__main__":
    raise SystemExit(main())
