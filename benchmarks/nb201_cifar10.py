"""NAS-Bench-201 / CIFAR-10 protocol of BN-NAS and FBN-NAS: train, score, analyze, stand-alone study.

One code path at three sizes (``--preset smoke|cpu|gpu``, see ``nb201_protocol/presets.py``):

1. ``train``: three BN-only supernets -- BN-NAS (``bnnas``, SPOS), FBN (``fair``, SPOS), FBN
   (``fairnas``, FairNAS) -- from ``configs/`` plus the preset's size overrides; per-epoch loss
   and accuracy go into the sidecar.
2. ``score``: every column of ``--columns`` (``<indicator>[@<network>]``: ``gamma@bnnas``,
   ``cpi@fair``, ``naswot`` on the standard network, ``naswot@fair`` on the fair one...) over
   the NB201 space; parameter-only columns over all 15,625, the others over ``--pool``.
3. ``analyze``: Kendall tau / Spearman / top-10 % vs ``cifar10_test_200ep`` (Fig. 4), gamma
   scatter (Figs. 2-3), Table 1 (top-10 op counts), Table 2 (BN-NAS EA, ``--search-seeds``).
4. ``standalone`` (run separately): stand-alone networks trained BN-only in both BN
   placements, gamma vs accuracy (FBN-NAS Figs. 2-3), as many as fit ``--standalone-budget-s``.

Every stage writes its outputs under ``--out`` as soon as it ends (scores: after every column),
and the sidecar ``nb201_cifar10_scores.csv.json`` (``standalone.json`` for stage 4) records the
preset, every setting, the per-stage times, device and JAX version, so a run cut off by a time
limit still returns what it finished. Examples::

    export FBNAS_CIFAR10_ARCHIVE=../shared/data/cifar10/cifar10-jpeg.tar.gz
    export FBNAS_NB201_CSV=../shared/data/nasbench201/nb201_cifar10_accuracy.csv
    python benchmarks/nb201_cifar10.py --preset smoke --out /tmp/smoke          # ~1-2 min, CPU
    python benchmarks/nb201_cifar10.py --preset cpu --out benchmarks/results/cpu
    python benchmarks/nb201_cifar10.py --preset gpu --out benchmarks/results/gpu  # one H100
    python benchmarks/nb201_cifar10.py --preset gpu --stages standalone --out benchmarks/results/gpu
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # nb201_protocol/ beside this file

from nb201_protocol.presets import PRESETS  # noqa: E402

STAGES = ("train", "score", "analyze", "standalone")
FORBIDDEN_MODULES = ("tensorflow", "tensorflow_datasets", "neural_tangents")  # absent on the device machine


def _json_arg(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None


def _list_arg(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu", help="sizes of every stage (default cpu)")
    p.add_argument("--stages", type=_list_arg, default=["train", "score", "analyze"],
                   help=f"comma-separated, from {','.join(STAGES)} (default train,score,analyze)")
    p.add_argument("--truth", default=os.environ.get("FBNAS_NB201_CSV"),
                   help="NB201 ground-truth CSV (default $FBNAS_NB201_CSV)")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results/<preset>)")
    p.add_argument("--workdirs", default=None, help="supernet checkpoints (default runs/nb201_cifar10/<preset>)")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides applied to every network after the preset's, e.g. train.seed=1")
    g = p.add_argument_group("preset values (each flag overrides the preset)")
    g.add_argument("--configs", type=_json_arg, help='JSON {"bnnas": path, "fair": path, "fairnas": path}')
    g.add_argument("--overrides", type=_list_arg, help="comma-separated config overrides for the three supernets")
    g.add_argument("--fairnas-overrides", type=_list_arg, help="extra overrides for the FairNAS supernet")
    g.add_argument("--train-budget-s", type=float, help="stop a supernet's training after this many seconds")
    g.add_argument("--columns", type=_list_arg, help="score columns, <indicator>[@<network>], comma-separated")
    g.add_argument("--deadline-s", type=float,
                   help="start no new score column once this many seconds have passed since the benchmark "
                        "started (the analyze stage still runs; the device script sets it from its budget)")
    g.add_argument("--pool", type=int, help="architectures for forward/gradient columns (15625 = all)")
    g.add_argument("--chunk-size", type=int, help="architectures per compiled scoring call")
    g.add_argument("--chunk-sizes", type=_json_arg, help='JSON per-indicator chunk sizes, e.g. {"ntk_cond": 4}')
    g.add_argument("--eval-batch-size", type=int, help="images of the fixed evaluation batch")
    g.add_argument("--mc-samples", type=int, help="Monte-Carlo BN samples (uncertainty)")
    g.add_argument("--mc-batch-size", type=int, help="training images per MC-BN sample")
    g.add_argument("--indicator-options", type=_json_arg,
                   help='JSON per-indicator options, e.g. {"grasp": {"batch_size": 16}}')
    g.add_argument("--search-seeds", type=int, help="EA seeds per method (Table 2)")
    g.add_argument("--standalone-archs", type=int, help="at most this many stand-alone architectures")
    g.add_argument("--standalone-chunk", type=int, help="stand-alone networks trained at once (vmap)")
    g.add_argument("--standalone-budget-s", type=float, help="time budget of the standalone stage")
    g.add_argument("--standalone-overrides", type=_list_arg, help="config overrides of the stand-alone nets")
    g.add_argument("--standalone-eval-images", type=int, help="test images per stand-alone evaluation")
    p.add_argument("--seed", type=int, default=0, help="pool, evaluation batch and stand-alone sample seed")
    p.add_argument("--devices", default=None, help="'all' to shard scoring over local devices")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    bad = [s for s in args.stages if s not in STAGES]
    if bad:
        parser.error(f"unknown stage(s) {bad}; choose from {','.join(STAGES)}")
    if ("analyze" in args.stages or "standalone" in args.stages) and not args.truth:
        parser.error("--truth (or $FBNAS_NB201_CSV) is required for the analyze and standalone stages")
    if args.truth and not Path(args.truth).is_file():
        parser.error(f"--truth {args.truth!r} does not exist")
    args.out = args.out or f"benchmarks/results/{args.preset}"
    args.workdirs = args.workdirs or f"runs/nb201_cifar10/{args.preset}"
    return args


class Sidecar:
    """The JSON sidecar, rewritten (atomically) whenever a stage reports progress."""

    def __init__(self, path: Path, args):
        from fbnas_jax.runtime import device_summary

        self.path = path
        self.meta = json.loads(path.read_text()) if path.exists() else {}
        self.meta.update({"date": dt.date.today().isoformat(), "preset": args.preset, "device": device_summary(),
                          "python": sys.version.split()[0]})
        self.meta.setdefault("args_by_stage", {})
        self.meta.setdefault("stage_seconds", {})
        self.meta.setdefault("stage_cpu_seconds", {})  # this process's CPU time: robust to a shared machine's load

    def put(self, key: str, value) -> None:
        self.meta[key] = value
        self.write()

    def write(self) -> None:
        self.meta["loadavg"] = list(os.getloadavg())
        self.meta["forbidden_modules_imported"] = [m for m in FORBIDDEN_MODULES if m in sys.modules]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.meta, indent=1, default=str))
        tmp.replace(self.path)


def main(argv=None) -> int:
    t_start = time.perf_counter()
    args = parse_args(argv)
    args.t_start = t_start
    from fbnas_jax.runtime import enable_compilation_cache

    from nb201_protocol import analyze_stage, score_stage, standalone_stage, train_stage

    enable_compilation_cache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    main_stages = [s for s in args.stages if s != "standalone"]
    log = lambda m: print(m, flush=True)  # noqa: E731
    if main_stages:
        side = Sidecar(out / f"{score_stage.SCORES_CSV}.json", args)
        for stage in main_stages:
            side.meta["args_by_stage"][stage] = vars(args)
            t0, c0 = time.perf_counter(), time.process_time()
            if stage == "train":
                train_stage.run(args, log, lambda v: side.put("train", v))
            elif stage == "score":
                score_stage.run(args, log, lambda v: side.put("score", v))
            else:
                side.put("analyze", analyze_stage.run(args, log, side.meta))
                analyze_stage.write_markdown(out / "nb201_cifar10.md", side.meta)
            side.meta["stage_seconds"][stage] = time.perf_counter() - t0
            side.meta["stage_cpu_seconds"][stage] = time.process_time() - c0
            side.write()
            log(f"stage {stage}: {side.meta['stage_seconds'][stage]:.0f} s")
    if "standalone" in args.stages:
        side = Sidecar(out / "standalone.json", args)
        side.meta["args_by_stage"]["standalone"] = vars(args)
        t0, c0 = time.perf_counter(), time.process_time()
        standalone_stage.run(args, log, lambda v: side.put("standalone", v))
        side.meta["stage_seconds"]["standalone"] = time.perf_counter() - t0
        side.meta["stage_cpu_seconds"]["standalone"] = time.process_time() - c0
        side.write()
        log(f"stage standalone: {side.meta['stage_seconds']['standalone']:.0f} s")
    leaked = [m for m in FORBIDDEN_MODULES if m in sys.modules]
    if leaked:  # the device machine has none of them: fail here, not there
        print(f"error: imported {leaked}, which the device machine does not have", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
