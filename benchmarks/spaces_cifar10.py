"""MobileNet and DARTS spaces on CIFAR-10: picks of CPI and gamma vs random picks of similar FLOPs.

No ground truth exists for these spaces, so this validates what can be validated, per space:

1. ``train``: train the fair BN-only supernet of ``configs/<space>_cifar10_<preset>.yaml``.
2. ``finite``: score ``--finite N`` random architectures with every supernet indicator
   (gamma, trainability, expressivity, uncertainty, CPI) and count non-finite scores
   (``finite_data=M``: the forward-based ones on the first M only, for CPU time).
3. ``search``: FLOPs limit = the median FLOPs of random architectures (the space's reference
   network, i.e. full width); the BN-NAS evolutionary search (population 50, 20 generations,
   top-k 10, 25 mutations at p 0.1, 25 crossovers; smaller with ``--ea``) maximising gamma and
   maximising CPI (against a fixed reference set of random architectures).
4. ``retrain``: the two picks and 5 random architectures of similar FLOPs (within 10 % of the
   picks' mean) trained stand-alone (all parameters, one recipe for all: Nesterov SGD 0.9, cosine,
   the preset's rate, weight decay 5e-4, no warm-up or label smoothing) for a few epochs; test
   accuracy of each on the 10,000 test images is written as it comes out.

Outputs: ``benchmarks/results/<space>/cifar10_<preset>.json`` (+ ``.md``) with the config,
device, JAX version, date, load averages and CPU seconds of every stage. Example (CPU)::

    FBNAS_CIFAR10_ARCHIVE=../shared/data/cifar10/cifar10-jpeg.tar.gz \\
    nice -n 10 python benchmarks/spaces_cifar10.py --space mobilenet --preset cpu

``--preset gpu`` uses the larger configs (``*_cifar10_gpu.yaml``), the full EA and longer
retraining: the entry for the GPU device script.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

INDICATORS = ("gamma", "trainability", "expressivity", "uncertainty", "cpi")
PRESETS = {
    # CPU (2 shared cores): small EA for CPI (each candidate costs two supernet forwards), short retraining
    # finite_*: the 1,000-architecture finiteness check scores with small batches (it checks
    # for NaN / inf, not ranking quality)
    "cpu": dict(finite=1000, finite_data=None, ea_cpi=None, finite_eval_batch=16, finite_mc=(2, 8), eval_batch=32, mc_samples=3, mc_batch=16,
                chunk=50, reference=100,
                ea=dict(population=20, generations=5, top_k=5, mutations=10, crossovers=10, mutation_prob=0.1),
                retrain=dict(epochs=3, batch_size=128, learning_rate=0.05, subset=10000, flops_tolerance=0.1, test_images=None)),
    "gpu": dict(finite=1000, finite_data=None, ea_cpi=None, finite_eval_batch=64, finite_mc=(10, 64), eval_batch=64, mc_samples=10, mc_batch=64,
                chunk=256, reference=1000,
                ea=dict(population=50, generations=20, top_k=10, mutations=25, crossovers=25, mutation_prob=0.1),
                retrain=dict(epochs=30, batch_size=256, learning_rate=0.1, subset=None, flops_tolerance=0.1, test_images=None)),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", choices=("mobilenet", "darts"), required=True)
    p.add_argument("--preset", choices=tuple(PRESETS), default="cpu")
    p.add_argument("--stages", default="train,finite,search,retrain")
    p.add_argument("--config", help="supernet config (default configs/<space>_cifar10_<preset>.yaml)")
    p.add_argument("--finite", type=int, help="random architectures of the finiteness check (preset: 1000)")
    p.add_argument("--objectives", default="gamma,cpi",
                   help="search stage: EA objectives among gamma, trainability, cpi (each picked arch is retrained)")
    p.add_argument("--random", type=int, default=5, help="random architectures of similar FLOPs to retrain")
    p.add_argument("--workdir", default="runs/spaces_cifar10")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], help="extra overrides of the supernet config")
    p.add_argument("--preset-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of the preset, e.g. retrain.epochs=2 ea.generations=3 finite=500")
    return p.parse_args(argv)


def apply_preset_overrides(preset: dict, items) -> dict:
    """``preset`` with ``a.b=value`` items applied (values parsed as YAML); unknown keys are errors."""
    import copy

    import yaml

    out = copy.deepcopy(preset)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--preset-set: expected KEY=VALUE, got {item!r}")
        *path, last = key.split(".")
        node = out
        for k in path:
            node = node.get(k) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            raise SystemExit(f"--preset-set: unknown preset key {key!r}")
        node[last] = yaml.safe_load(value)
    return out


class Record:
    """The results JSON, rewritten after every step so partial runs leave their numbers."""

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {}
        self.data.update(header)
        self.save()

    def stage(self, name: str, values: dict, t0: float, cpu0: float) -> None:
        values = dict(values, wall_s=round(time.time() - t0, 1), cpu_s=round(_cpu() - cpu0, 1),
                      loadavg_end=list(os.getloadavg()), finished=dt.datetime.now().isoformat(timespec="seconds"))
        self.data.setdefault("stages", {})[name] = values
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=2, default=_jsonable))


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def _context(run, ds, preset, seed):
    from fbnas_jax import scoring

    return scoring.make_context(run, ds, eval_batch_size=preset["eval_batch"], mc_samples=preset["mc_samples"],
                                mc_batch_size=preset["mc_batch"], seed=seed)


def main(argv=None) -> int:
    args = parse_args(argv)
    preset = apply_preset_overrides(PRESETS[args.preset], args.preset_set)
    from fbnas_jax.config import load_config
    from fbnas_jax.runtime import enable_compilation_cache

    enable_compilation_cache()
    import jax

    config_path = args.config or f"configs/{args.space}_cifar10_{args.preset}.yaml"
    cfg = load_config(config_path, args.set)
    workdir = Path(args.workdir) / f"{args.space}_{args.preset}"
    out = Path(args.out) / args.space / f"cifar10_{args.preset}.json"
    import sys

    rec = Record(out, {"space": args.space, "preset": args.preset, "config_file": config_path,
                       "command": " ".join(["python", "benchmarks/spaces_cifar10.py"] + list(sys.argv[1:] if argv is None
                                                                                          else argv)),
                       "config": cfg.to_dict(), "preset_settings": preset, "device": str(jax.devices()[0]),
                       "device_count": jax.device_count(), "jax_version": jax.__version__,
                       "platform": platform.platform(), "started": dt.datetime.now().isoformat(timespec="seconds"),
                       "loadavg_start": list(os.getloadavg()), "nice": os.nice(0)})
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    from fbnas_jax.training.loop import load_data, load_run, train

    if "train" in stages:
        t0, c0 = time.time(), _cpu()
        res = train(cfg, workdir / "supernet", progress=False, log=print)
        rec.stage("train", {"steps": int(res.state.step), "epochs": res.epochs, "history": res.history}, t0, c0)
        print(f"[{args.space}] supernet trained: {int(res.state.step)} steps", flush=True)
    run = load_run(workdir / "supernet")
    ds = load_data(run.config)
    from fbnas_jax import scoring
    from fbnas_jax.spaces import of_network

    space = of_network(run.net)
    rng = np.random.default_rng(args.seed)
    if "finite" in stages:
        t0, c0 = time.time(), _cpu()
        n = args.finite or preset["finite"]
        n_data = n if preset.get("finite_data") is None else min(n, int(preset["finite_data"]))  # 0: skip
        from fbnas_jax.scores_io import load_archs

        encs = load_archs(str(n), args.seed, space)
        ctx = _context(run, ds, dict(preset, eval_batch=preset["finite_eval_batch"], mc_samples=preset["finite_mc"][0],
                                     mc_batch=preset["finite_mc"][1]), args.seed)
        # gamma and trainability read BN parameters only: all n; the forward-based indicators
        # (expressivity, uncertainty, hence CPI) on the first n_data of them (CPU time)
        scores, timings = {}, {}
        for names, subset in ((["gamma", "trainability"], encs), (["expressivity", "uncertainty", "cpi"], encs[:n_data])):
            if not len(subset):
                continue
            result = scoring.score_architectures(ctx, names, subset, chunk_size=preset["chunk"], progress=False)
            # the second call recomputes trainability (a CPI component) on the prefix: keep the first
            scores.update({k: v for k, v in result.scores.items() if k not in scores})
            timings.update({k: v for k, v in result.timings.items() if k not in timings})
        summary = {k: {"n_archs": int(len(v)), "non_finite": int((~np.isfinite(v)).sum()), "min": float(np.nanmin(v)),
                       "max": float(np.nanmax(v)), "mean": float(np.nanmean(v))} for k, v in scores.items()}
        rec.stage("finite", {"n_archs": int(n), "n_archs_forward": int(n_data), "indicators": summary,
                             "timings_s": timings, "eval_batch": preset["finite_eval_batch"],
                             "mc": preset["finite_mc"]}, t0, c0)
        print(f"[{args.space}] finite check: {json.dumps({k: v['non_finite'] for k, v in summary.items()})}",
              flush=True)
    if "search" in stages:
        t0, c0 = time.time(), _cpu()
        from fbnas_jax.search.algorithms import ReferenceRankObjective, evolutionary_search

        _, flops = space.costs(space.sample(np.random.default_rng(args.seed + 1), 2000))
        limit = float(np.median(flops))
        ctx = _context(run, ds, preset, args.seed)
        scorer = scoring.Scorer(ctx, chunk_size=preset["chunk"])
        ref = space.sample(np.random.default_rng(args.seed + 2), preset["reference"])
        objectives = {"gamma": lambda e: scorer("gamma", e), "trainability": lambda e: scorer("trainability", e),
                      "cpi": ReferenceRankObjective({c: (lambda e, c=c: scorer(c, e)) for c in (
                          "expressivity", "trainability", "uncertainty")}, ref, space=space)}
        picks = {}
        for name in [o.strip() for o in args.objectives.split(",") if o.strip()]:
            fn = objectives[name]
            # ea_cpi: a smaller EA for CPI where each candidate costs supernet forwards (CPU)
            ea = dict(preset["ea"], **(preset.get("ea_cpi") or {})) if name == "cpi" else preset["ea"]
            found = evolutionary_search(fn, np.random.default_rng(args.seed + 3), max_flops=limit, space=space, **ea)
            picks[name] = found.to_dict()
            print(f"[{args.space}] {name} pick: {found.arch} ({found.flops_m:.1f} MFLOPs)", flush=True)
            picks[name]["ea"] = ea
            rec.stage("search", {"flops_limit_m": limit, "picks": picks}, t0, c0)  # after each objective
    if "retrain" in stages:
        picks = rec.data["stages"]["search"]["picks"]
        target = float(np.mean([p["flops_m"] for p in picks.values()]))
        candidates = space.sample(np.random.default_rng(args.seed + 4), 20000)
        _, flops = space.costs(candidates)
        tol = float(preset["retrain"].get("flops_tolerance", 0.1))
        close = np.flatnonzero(np.abs(flops - target) <= tol * target)
        chosen = candidates[rng.choice(close, size=min(args.random, len(close)), replace=False)]
        archs = [(f"{k} pick", p["arch"]) for k, p in picks.items()]
        archs += [(f"random {i + 1}", space.to_string(e)) for i, e in enumerate(chosen)]
        retrain_stage(args, cfg, preset, archs, space, workdir, rec)
    write_markdown(rec.data, out.with_suffix(".md"))
    return 0


def retrain_stage(args, cfg, preset, archs, space, workdir, rec) -> None:
    from fbnas_jax import data as fdata
    from fbnas_jax.training import steps
    from fbnas_jax.training.loop import train

    r = preset["retrain"]
    results = rec.data.get("stages", {}).get("retrain", {}).get("results", [])
    done = {x["arch"] for x in results}
    t0, c0 = time.time(), _cpu()
    for label, arch in archs:
        if arch in done:
            continue
        t1, c1 = time.time(), _cpu()
        rcfg = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, arch=arch),
            data=dataclasses.replace(cfg.data, subset=r["subset"]),
            train=dataclasses.replace(cfg.train, sampler="fixed", params="all", epochs=r["epochs"],
                                      batch_size=r["batch_size"], learning_rate=r["learning_rate"],
                                      weight_decay=5e-4, max_steps=None, warmup_epochs=0.0, label_smoothing=0.0))
        res = train(rcfg, None, progress=False, log=print)
        test = res.dataset
        if r.get("test_images"):  # a fixed prefix of the test split (CPU time); None: all of it
            n = int(r["test_images"])
            test = dataclasses.replace(test, test_images=test.test_images[:n], test_labels=test.test_labels[:n])
        acc = steps.evaluate(res.net, res.state.variables, fdata.eval_batches(test, 500), None)
        p, f = space.cost(space.parse(arch))
        results.append({"label": label, "arch": arch, "params_m": p, "flops_m": f, "test_accuracy": acc["accuracy"],
                        "final_train_loss": res.history[-1]["loss"] if res.history else None,
                        "wall_s": round(time.time() - t1, 1), "cpu_s": round(_cpu() - c1, 1),
                        "loadavg": list(os.getloadavg())})
        rec.stage("retrain", {"settings": r, "results": results}, t0, c0)
        print(f"[{args.space}] {label}: {100 * acc['accuracy']:.2f} % ({f:.1f} MFLOPs)", flush=True)


def write_markdown(data: dict, path: Path) -> None:
    st = data.get("stages", {})
    sk = data["config"]["model"].get("skeleton")
    lines = [f"# {data['space']} / CIFAR-10 ({data['preset']} preset)", "",
             f"device {data['device']} x{data['device_count']}, JAX {data['jax_version']}, started {data['started']}, "
             f"load average at start {', '.join(f'{x:.1f}' for x in data['loadavg_start'])} (shared 2-core machine; "
             "timings are inflated by other jobs)", "",
             f"command: `{data.get('command', '')}`", "",
             f"supernet: {data['config']['model']['space']} on `{sk}`, width x{data['config']['model']['width_mult']}, "
             f"C={data['config']['model']['channels']}, bn_mode {data['config']['model']['bn_mode']}, "
             f"{data['config']['train']['params']} training, {data['config']['train']['epochs']} epochs on "
             f"{data['config']['data']['subset']} images, sampler {data['config']['train']['sampler']}", ""]
    for name, x in st.items():
        lines.append(f"- stage `{name}`: {x['wall_s']:.0f} s wall, {x['cpu_s']:.0f} s CPU, finished {x['finished']}, "
                     f"load at end {', '.join(f'{v:.1f}' for v in x['loadavg_end'])}")
    lines.append("")
    if st.get("train", {}).get("epochs"):
        t = data["config"]["train"]
        lines += [f"Supernet training (BN-only, peak lr {t['learning_rate']}, warm-up {t.get('warmup_epochs', 0)} epochs "
                  f"from x{t.get('warmup_start_factor', 1)}, weight decay {t.get('weight_decay', 0)}, label smoothing "
                  f"{t.get('label_smoothing', 0)}; chance: loss 2.303 without smoothing, accuracy 10 %):", "",
                  "| epoch | steps | mean train loss | mean train acc. % |", "|---|---|---|---|"]
        lines += [f"| {e['epoch']} | {e['steps']} | {e['loss']:.3f} | {100 * e['accuracy']:.1f} |"
                  for e in st["train"]["epochs"]]
        lines.append("")
    if "finite" in st:
        f = st["finite"]
        lines += [f"Indicators on random architectures (eval batch {f['eval_batch']}, MC-BN {f['mc'][0]} passes of "
                  f"{f['mc'][1]} images):", "",
                  "| indicator | architectures | non-finite | min | max |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v.get('n_archs', f['n_archs'])} | {v['non_finite']} | {v['min']:.4g} | {v['max']:.4g} |"
                  for k, v in f["indicators"].items()]
        lines.append("")
    if "search" in st:
        s = st["search"]
        lines += [f"EA under {s['flops_limit_m']:.2f} MFLOPs (median of random architectures, full-width "
                  "reference network at 32x32):", "", "| objective | pick | MFLOPs | evaluated |", "|---|---|---|---|"]
        lines += [f"| {k} | `{p['arch']}` | {p['flops_m']:.2f} | {p['n_evaluated']} |" for k, p in s["picks"].items()]
        lines.append("")
    if "retrain" in st:
        n_test = st["retrain"]["settings"].get("test_images") or 10000
        lines += [f"Stand-alone training (test accuracy on {'the 10,000' if n_test == 10000 else f'the first {n_test:,} of the 10,000'} "
                  "CIFAR-10 test images):", "",
                  "| architecture | MFLOPs | params (M) | test acc. % |", "|---|---|---|---|"]
        for x in st["retrain"]["results"]:
            lines.append(f"| {x['label']} `{x['arch']}` | {x['flops_m']:.1f} | {x['params_m']:.3f} | "
                         f"{100 * x['test_accuracy']:.2f} |")
        s = st["retrain"]["settings"]
        lines += ["", f"stand-alone: {s['epochs']} epochs, all parameters, batch {s['batch_size']}, Nesterov SGD 0.9, "
                      f"cosine from lr {s['learning_rate']} (no warm-up, no label smoothing), weight decay 5e-4, "
                      f"subset {s['subset']}, width as the supernet; random architectures within "
                      f"{100 * s.get('flops_tolerance', 0.05):.0f} % of the picks' mean FLOPs", ""]
    lines += ["What this can show: every indicator is finite on random architectures of the trained supernet, "
              "the EA keeps to the FLOPs limit, and the whole pipeline runs from a config. What it cannot show: "
              "whether CPI or gamma picks better architectures -- a few epochs on a subset at small width, one "
              "seed, no ground truth, differences of a point or two are within run-to-run noise."]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
