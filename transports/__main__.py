"""``python -m transports``: every transport, whether it is usable here, and why not."""

import transports


def print_table() -> None:
    print("Transports (--transport NAME; auto picks one):")
    for name, status, detail in transports.describe_all():
        print(f"  {name:<10} {status:<12} {detail}")


def main() -> int:
    from ground.errors import run_main

    return run_main("collscale", lambda: print_table() or 0, prints="the list")


if __name__ == "__main__":
    raise SystemExit(main())
