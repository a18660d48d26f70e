"""``python -m collectives``: the collectives, and the transports usable here."""

from collectives.spec import SPECS


def main() -> int:
    print("Collectives (run one: mpirun -n N python -m collectives.NAME [flags]):")
    for spec in SPECS.values():
        extra = []
        if spec.reduces:
            extra.append("-o")
        if spec.rooted:
            extra.append("-r")
        if spec.exact_ranks:
            extra.append(f"exactly {spec.exact_ranks} ranks")
        note = f"  [{', '.join(extra)}]" if extra else ""
        print(f"  {spec.name:<15} {spec.summary}{note}")
    print()
    from transports.__main__ import print_table

    print_table()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
