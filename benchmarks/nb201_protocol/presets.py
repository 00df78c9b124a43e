"""Presets of the NB201 / CIFAR-10 protocol: one code path, three sizes.

* ``gpu``: the paper's scale, sized for one H100 and a 15-minute device budget (issue 7):
  three BN-only supernets at C=16, N=5 on all 50,000 CIFAR-10 training images (BN-NAS SPOS,
  FBN SPOS, FBN FairNAS) with the recipe of ``configs/`` (BN-NAS's schedule at the peak rate
  of the CPU sweep), the parameter-only columns over all 15,625 architectures, the forward /
  gradient columns over a pool of 1,000 (the paper's sample size), EA search with 10 seeds.
  Sizes come from ``benchmarks/device/estimate_gpu_time.py`` (an ESTIMATE from FLOP counts at
  an assumed 12 TFLOP/s effective; no GPU has run it yet): with the current engine, which
  computes every candidate op of the supernet, scoring all 15,625 with every column would
  take ~75 min (uncertainty alone ~20 min per supernet), so the pool is cut to 1,000; and
  FairNAS is cut from BN-NAS's 15 epochs to 2 (one FairNAS step trains 5 paths) so that each
  supernet needs ~60 s of steps; ``train_budget_s`` stops any supernet at 60 s of steps
  (recorded, schedule unfinished), and the device script's deadline skips the columns that
  no longer fit (listed in the sidecar) so that the analysis still runs. Chunk sizes are
  chosen for 80 GB and **not measured**: the first device run should confirm them.
* ``cpu``: the reduced protocol of the committed CPU results (C=8, N=1, 20,000 images,
  4 epochs; forward/gradient indicators on a pool of architectures).
* ``smoke``: the same code path at toy sizes (C=4, N=1, 500 images, one short epoch, a pool
  of 16 architectures, tiny batches, one column of every kind, 4 stand-alone networks per
  placement); CI runs it through the device script (``tests/test_nb201_protocol.py``).

Every value is an argparse default of ``benchmarks/nb201_cifar10.py``: a flag given on the
command line overrides the preset, and everything used is written to the sidecar JSON.
"""
from __future__ import annotations

# Column order = scoring order: what the paper's claims need first, so a run cut off by the
# device's time limit still returns them (each column is written as soon as it is scored).
PARAM_ONLY = ["gamma@bnnas", "gamma@fair", "gamma@fairnas", "trainability@fair", "trainability@fairnas",
              "params", "flops"]
FBN = ["expressivity@fair", "uncertainty@fair", "cpi@fair"]
PROXIES = ["synflow", "naswot", "snip", "grad_norm", "jacob_cov"]  # cheapest first (estimate)
FAIRNAS = ["expressivity@fairnas", "uncertainty@fairnas", "cpi@fairnas"]
IF_THEY_FIT = ["supernet_accuracy@fair", "supernet_accuracy@fairnas", "grasp", "fisher", "linear_regions",
               "supernet_accuracy@bnnas", "ntk_cond"]
ALL_COLUMNS = PARAM_ONLY + FBN + PROXIES + FAIRNAS + IF_THEY_FIT

SUPERNET_CONFIGS = {"bnnas": "configs/bnnas_cifar10.yaml", "fair": "configs/fbn_cifar10.yaml",
                    "fairnas": "configs/fairnas_fbn_cifar10.yaml"}
CPU_CONFIGS = {"bnnas": "configs/bnnas_cifar10_cpu.yaml", "fair": "configs/fbn_cifar10_cpu.yaml",
               "fairnas": "configs/fairnas_fbn_cifar10_cpu.yaml"}

PRESETS: dict[str, dict] = {
    "gpu": {
        "configs": SUPERNET_CONFIGS,
        # a checkpoint every 2 epochs (390 steps): a supernet that diverges is scored from its last one
        "overrides": ["train.log_every=50", "train.checkpoint_every=390"],
        "fairnas_overrides": ["train.epochs=2", "train.warmup_epochs=1"],
        "train_budget_s": 60.0,
        "columns": ALL_COLUMNS,
        "pool": 1000,
        "chunk_size": 128,
        "chunk_sizes": {"uncertainty": 64, "synflow": 64, "jacob_cov": 32, "snip": 32, "grad_norm": 32,
                        "grasp": 16, "fisher": 32, "linear_regions": 16, "ntk_cond": 4},
        "eval_batch_size": 128,
        "mc_samples": 10,
        "mc_batch_size": 64,
        "indicator_options": {"linear_regions": {"batch_size": 128, "repeats": 1}},
        "search_seeds": 10,
        "standalone_archs": 1000,
        "standalone_chunk": 8,
        "standalone_budget_s": 100.0,
        "standalone_overrides": ["train.epochs=1", "train.warmup_epochs=0.5"],
        "standalone_eval_images": 10000,
    },
    "cpu": {
        "configs": CPU_CONFIGS,
        "overrides": [],
        "fairnas_overrides": [],
        "train_budget_s": None,
        "columns": [c for c in ALL_COLUMNS if c not in ("ntk_cond", "supernet_accuracy@bnnas")],
        "pool": 1000,
        "chunk_size": 16,
        "chunk_sizes": {},
        "eval_batch_size": 64,
        "mc_samples": 4,
        "mc_batch_size": 32,
        "indicator_options": {"grasp": {"batch_size": 16}, "snip": {"batch_size": 32},
                              "grad_norm": {"batch_size": 32}, "fisher": {"batch_size": 32},
                              "linear_regions": {"batch_size": 64, "repeats": 1}},
        "search_seeds": 10,
        "standalone_archs": 64,
        "standalone_chunk": 8,
        "standalone_budget_s": 1800.0,
        "standalone_overrides": ["train.epochs=1", "train.warmup_epochs=0.5"],
        "standalone_eval_images": 2000,
    },
    "smoke": {
        "configs": CPU_CONFIGS,
        "overrides": ["model.channels=4", "data.subset=500", "train.epochs=1", "train.warmup_epochs=0.5",
                      "train.batch_size=50", "train.log_every=5", "train.checkpoint_every=100000"],
        "fairnas_overrides": ["train.max_steps=2"],
        "train_budget_s": None,
        # one column of every kind (table, cost, supernet forward, composite, training-free on
        # a fresh network; @fairnas / @fair only switch the scoring context): the per-indicator
        # code is tested in tests/test_indicators_* and tests/test_training_free.py, and every
        # extra indicator is another XLA compilation (10-100 s on a loaded 2-core machine)
        "columns": PARAM_ONLY + ["expressivity@fair", "uncertainty@fair", "cpi@fair", "naswot"],
        "pool": 16,
        "chunk_size": 8,
        "chunk_sizes": {"ntk_cond": 4},
        "eval_batch_size": 16,
        "mc_samples": 2,
        "mc_batch_size": 8,
        "indicator_options": {name: {"batch_size": 8 if name == "ntk_cond" else 16, "repeats": 1}
                              for name in ("naswot", "jacob_cov", "snip", "grasp", "fisher", "grad_norm",
                                           "ntk_cond", "linear_regions")},
        "search_seeds": 10,
        "standalone_archs": 4,
        "standalone_chunk": 4,
        "standalone_budget_s": None,
        "standalone_overrides": ["model.channels=4", "data.subset=500", "train.epochs=1",
                                 "train.warmup_epochs=0.5", "train.batch_size=50"],
        "standalone_eval_images": 500,
    },
}
