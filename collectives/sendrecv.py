"""``python -m collectives.sendrecv``: ring exchange: send to rank+1, receive from rank-1 (nccl-tests sendrecv)."""

from collectives.cli import entry_points

run, main = entry_points("sendrecv")

if __name__ == "__main__":
    raise SystemExit(main())
