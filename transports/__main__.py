"""``python -m transports``: every transport, whether it is usable here, and why not."""

import transports


def print_table() -> None:
    print("Transports (--transport NAME; auto picks one):")
    for name, status, detail in transports.describe_all():
        print(f"  {name:<10} {status:<12} {detail}")


def main() -> int:
    print_table()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
