"""``python -m collectives.broadcast``: the root's vector is copied to every rank."""

from collectives.cli import entry_points

run, main = entry_points("broadcast")

if __name__ == "__main__":
    raise SystemExit(main())
