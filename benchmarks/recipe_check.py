"""A few BN-only supernet steps of a config under its training recipe: does the loss stay finite, does it fall?

Shrinks the config's run to ``--images`` training images for 2 epochs with the warm-up over the
first (so the peak rate is reached half-way), then prints one JSON line: per-epoch mean loss and
accuracy, the loss every ``log_every`` steps, wall seconds and the load average. Used to check
that the NB201 recipe (peak rate 4) does not diverge on the other spaces before adopting it
(results: ``benchmarks/results/recipe/space_checks.jsonl``). Example::

    nice -n 10 python benchmarks/recipe_check.py configs/darts_cifar10_cpu.yaml --images 1280 \\
        --set train.learning_rate=1 >> benchmarks/results/recipe/space_checks.jsonl
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("--images", type=int, default=2560, help="class-balanced training subset (2 epochs)")
    p.add_argument("--set", nargs="*", default=[], help="extra config overrides (after the shrinking ones)")
    args = p.parse_args(argv)
    from fbnas_jax.config import load_config
    from fbnas_jax.runtime import enable_compilation_cache
    from fbnas_jax.training.loop import train

    enable_compilation_cache()
    shrink = [f"data.subset={args.images}", "train.epochs=2", "train.warmup_epochs=1", "train.log_every=2"]
    cfg = load_config(args.config, shrink + list(args.set))
    t = time.time()
    res = train(cfg, None, progress=False, log=lambda m: print(m, flush=True))
    print(json.dumps({"config": args.config, "overrides": shrink + list(args.set), "train": cfg.to_dict()["train"],
                      "epochs": res.epochs, "history": res.history, "wall_s": round(time.time() - t, 1),
                      "loadavg_end": os.getloadavg(), "date": dt.datetime.now().isoformat(timespec="seconds")}),
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
