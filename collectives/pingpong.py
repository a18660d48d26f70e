"""``python -m collectives.pingpong``: two ranks bounce a message; one-way time = round trip / 2 (OSU latency)."""

from collectives.cli import entry_points

run, main = entry_points("pingpong")

if __name__ == "__main__":
    raise SystemExit(main())
