"""``fbnas mobilenet cost`` and ``fbnas darts cost``: exact params and multiply-adds of one
architecture, as the cost models of :mod:`fbnas_jax.spaces.mobilenet` (ProxylessNAS convention)
and :mod:`fbnas_jax.spaces.darts` (the DARTS code's count) define them; the same numbers the EA's
``--max-flops`` / ``--max-params`` limits compare against. Pure NumPy: no JAX is imported."""
from __future__ import annotations

import argparse
import json


def _print_cost(args, params: int, flops: int, extra: dict) -> int:
    out = {"params_m": round(params / 1e6, 6), "flops_m": round(flops / 1e6, 6), "params": int(params),
           "flops": int(flops), **extra}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"params: {params / 1e6:.6f} M   FLOPs (multiply-adds): {flops / 1e6:.6f} M   "
              + "   ".join(f"{k}: {v}" for k, v in extra.items()))
    return 0


def cmd_mobilenet_cost(args) -> int:
    from fbnas_jax.spaces.mobilenet import MobileNetSpace

    space = MobileNetSpace(args.skeleton)
    changes = {k: v for k, v in (("input_size", args.input_size), ("num_classes", args.classes)) if v is not None}
    if changes:
        space = space._with(changes)
    enc = space.parse(args.arch)
    params, flops = space.exact_cost(enc)
    return _print_cost(args, params, flops, {"skeleton": space.skeleton.name, "arch": space.to_string(enc),
                                             "input_size": space.skeleton.input_size})


def cmd_darts_cost(args) -> int:
    from fbnas_jax.spaces.darts import DartsSpace

    space = DartsSpace(args.setting)
    enc = space.parse(args.genotype)
    network = {"channels": args.channels, "layers": args.layers, "num_classes": args.classes,
               "input_size": args.input_size}
    params, flops = space.exact_costs(enc[None], **network)
    s = space.network_setting(**network)
    return _print_cost(args, int(params[0]), int(flops[0]),
                       {"setting": args.setting, "channels": s.channels, "layers": s.layers,
                        "input_size": s.input_size})


def register(sub) -> None:
    p = sub.add_parser("mobilenet", help="MobileNet (ProxylessNAS / BN-NAS) space utilities (cost)")
    msub = p.add_subparsers(dest="mobilenet_command", metavar="SUBCOMMAND")
    c = msub.add_parser(
        "cost", help="params (M) and multiply-adds (M) of 21 layer choices, ProxylessNAS convention",
        description="Exact cost of one architecture: FLOPs = multiply-adds of every conv + the classifier's "
                    "weights; params = every trainable parameter (BN and classifier bias included). "
                    "ProxylessNAS-mobile comes out at 320.427584 M / 4.080512 M.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  fbnas mobilenet cost 'k5e3,k3e3,skip,skip,k7e3,k3e3,k5e3,k5e3,k7e6,k5e3,k5e3,k5e3,"
               "k5e6,k5e3,k5e3,k5e3,k7e6,k7e6,k7e3,k7e3,k7e6' --skeleton proxylessnas-mobile --json")
    c.add_argument("arch", help="comma-separated layer choices: k3e3 k3e6 k5e3 k5e6 k7e3 k7e6 skip (k*e*_se with "
                                "a searched-SE skeleton), or BN-NAS's integers -1 (skip), 0..5")
    c.add_argument("--skeleton", default="proxylessnas-gpu",
                   help="proxylessnas-mobile | proxylessnas-gpu (default) | proxylessnas-gpu-cifar | a skeleton "
                        ".yaml file")
    c.add_argument("--input-size", type=int, default=None, help="image size (default: the skeleton's, 224)")
    c.add_argument("--classes", type=int, default=None, help="classes (default: the skeleton's, 1000)")
    c.add_argument("--json", action="store_true", help="one JSON object (params_m, flops_m, exact integers)")
    c.set_defaults(func=cmd_mobilenet_cost)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])

    p = sub.add_parser("darts", help="DARTS space utilities (cost)")
    dsub = p.add_subparsers(dest="darts_command", metavar="SUBCOMMAND")
    c = dsub.add_parser(
        "cost", help="params (M) and multiply-adds (M) of a genotype's evaluation network",
        description="Exact cost of a genotype's evaluation network without the auxiliary head (as the DARTS "
                    "code counts params): DARTS_V2 on CIFAR-10 = 3.349342 M params.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  fbnas darts cost DARTS_V2 --setting cifar --json\n"
               "  fbnas darts cost \"Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], "
               "reduce=[...], reduce_concat=[2, 3, 4, 5])\"")
    c.add_argument("genotype", help="a genotype in the DARTS notation, a name (DARTS_V1, DARTS_V2), or the "
                                    "32 comma-separated integers of the encoding")
    c.add_argument("--setting", choices=("cifar", "imagenet"), default="cifar",
                   help="cifar: C=36, 20 cells, 32x32, 10 classes; imagenet: C=48, 14 cells, 224x224, 1000 classes")
    c.add_argument("--channels", type=int, default=None, help="override C")
    c.add_argument("--layers", type=int, default=None, help="override the number of cells")
    c.add_argument("--input-size", type=int, default=None, help="override the image size")
    c.add_argument("--classes", type=int, default=None, help="override the number of classes")
    c.add_argument("--json", action="store_true", help="one JSON object (params_m, flops_m, exact integers)")
    c.set_defaults(func=cmd_darts_cost)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
