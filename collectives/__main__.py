"""``python -m collectives [NAME [flags]]``: list the collectives, or run one."""

import sys

from facts.spec import SPECS


def listing() -> int:
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
    print(f"  {'replicate':<15} data-parallel training steps of a real model under DDP, measured per phase "
          "and gradient bucket  [--model, --batch; torch: gloo, nccl, hccl]")
    print(f"  {'weight_stream':<15} SwarmX-style weights down / gradients up a fan-out tree, pipelined "
          "per layer  [--fanout, --layers; needs point-to-point: mpi, gloo, nccl]")
    print()
    from transports.__main__ import print_table

    print_table()
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "list"):
        from ground.errors import run_main

        return run_main("collscale", listing, prints="the list")
    name, rest = argv[0], argv[1:]
    if name == "weight_stream":
        from collectives import weight_stream

        return weight_stream.main(rest)
    if name == "replicate":
        from collectives import replicate

        return replicate.main(rest)
    if name not in SPECS:
        from ground.env import detect

        if (detect().rank or 0) == 0:
            print(f"collscale: error: unknown collective '{name}' (choose from: {', '.join(SPECS)})",
                  file=sys.stderr)
        return 2
    from collectives import cli

    return cli.main(name, rest)


if __name__ == "__main__":
    raise SystemExit(main())
