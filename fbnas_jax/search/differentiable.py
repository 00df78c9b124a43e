"""Run a differentiable search (DARTS or BaLeNAS) from a config: data halves, loop, checkpoints.

The config is an ordinary :class:`fbnas_jax.config.Config` (``model``: the supernet; ``data``;
``train``: the weight optimiser -- SGD, cosine, ``params: all``) plus a ``search`` section
(:class:`fbnas_jax.search.darts.ArchConfig`). The training split is halved once, by a fixed
permutation of ``train.seed``: the first half trains the weights, the second the
architecture (the DARTS protocol on NB201). Each step is one architecture step on an
arch-train batch, then one weight step on a weight-train batch (the DARTS order).

A workdir holds ``run.json`` (both configs), ``checkpoints/`` (orbax, the whole
:class:`SearchState`) and ``epochs.jsonl`` (one line per finished epoch). As with
``fbnas train-supernet`` (:mod:`fbnas_jax.training.loop`, whose lock, run-file checks and
checkpointer are reused) a search resumes from its newest checkpoint, refuses a changed
config, and, everything random being a function of ``(train.seed, step)``, ends where an
uninterrupted run would.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from fbnas_jax import data as fdata
from fbnas_jax.config import Config, ConfigError, apply_overrides, config_differences, from_dict, read_config_file
from fbnas_jax.search.darts import (
    ArchConfig, SearchState, arch_config_from_dict, arch_optimizer, init_arch, make_arch_step, make_weight_step,
)
from fbnas_jax.spaces import get as get_space
from fbnas_jax.training import steps
from fbnas_jax.training.checkpoint import Checkpointer
from fbnas_jax.training.loop import (
    RESUMABLE_KEYS, RUN_FILE, RunMismatchError, TrainingDivergedError, WorkdirLock, load_data,
    network_from_config, optimizer_from_config, with_absolute_paths,
)

EPOCHS_FILE = "epochs.jsonl"


def load_search_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> tuple[Config, ArchConfig]:
    """(network/data/weight config, architecture config) from a YAML file with sections
    ``model``, ``data``, ``train`` and ``search``, and ``section.key=value`` overrides."""
    raw = read_config_file(path)
    raw = apply_overrides(raw, overrides)
    search = raw.pop("search", None)
    return from_dict(raw), arch_config_from_dict(search)


def split_halves(ds: fdata.Dataset, seed: int) -> tuple[fdata.Dataset, fdata.Dataset]:
    """(weight-train, arch-train): the training split halved by a fixed permutation of ``seed``.

    Both halves keep the full split's normalisation statistics and the test split."""
    n = ds.num_train
    if n < 2:
        raise fdata.DatasetError(f"dataset {ds.name!r} has {n} training image(s): too few to halve")
    perm = np.random.default_rng([int(seed), 0xDA475]).permutation(n)
    halves = []
    for part, idx in (("weight-train", np.sort(perm[: n // 2])), ("arch-train", np.sort(perm[n // 2:]))):
        halves.append(dataclasses.replace(ds, train_images=ds.train_images[idx], train_labels=ds.train_labels[idx],
                                          name=f"{ds.name} ({part} half)"))
    return halves[0], halves[1]


@dataclasses.dataclass
class SearchRun:
    """Outcome of :func:`search`: the state (``state.arch`` = alpha or mu) and what made it."""

    config: Config
    arch_config: ArchConfig
    net: Any
    state: SearchState
    arch_opt: Any  # optax transformation (DARTS) or VAdam (BaLeNAS)
    dataset: fdata.Dataset
    weight_data: fdata.Dataset
    arch_data: fdata.Dataset
    epochs: list[dict[str, Any]]
    total_steps: int
    seconds: float

    @property
    def space(self):
        return get_space(self.config.model.space)


def _check(cfg: Config) -> None:
    if cfg.model.arch is not None:
        raise ConfigError("a differentiable search needs the supernet: unset model.arch")
    if cfg.model.space != "nb201":
        raise ConfigError(f"differentiable search runs on the NB201 mixed-op supernet; model.space={cfg.model.space!r}")


def _run_record(cfg: Config, acfg: ArchConfig, ds: fdata.Dataset) -> dict[str, Any]:
    return {"config": cfg.to_dict(), "search": dataclasses.asdict(acfg), "num_classes": ds.num_classes,
            "input_shape": list(ds.image_shape), "dataset": ds.name, "kind": "differentiable-search"}


def _check_run_file(workdir: Path, cfg: Config, acfg: ArchConfig) -> None:
    path = workdir / RUN_FILE
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
        old_cfg = with_absolute_paths(from_dict(old["config"]))
        old_search = arch_config_from_dict(old.get("search"))
    except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as err:
        raise ConfigError(f"{path} is not the run file of a search ({type(err).__name__}: {err})") from None
    diffs = config_differences(old_cfg, cfg, ignore=RESUMABLE_KEYS)
    a, b = dataclasses.asdict(old_search), dataclasses.asdict(acfg)
    diffs += [f"search.{k}: {a[k]!r} -> {b[k]!r}" for k in sorted(a) if a[k] != b[k]]
    if diffs:
        raise RunMismatchError(workdir, diffs)


def search(cfg: Config, acfg: ArchConfig, workdir: str | Path | None = None, *,
           dataset: fdata.Dataset | None = None, progress: bool = True, stop_after: int | None = None,
           log: Callable[[str], None] = print) -> SearchRun:
    """Run (or resume) the search per ``cfg`` / ``acfg``; see the module docstring.

    ``stop_after`` ends this call after that many steps without a final save, like a killed
    process (tests of resumption).
    """
    t0 = time.perf_counter()
    cfg = with_absolute_paths(cfg)
    _check(cfg)
    if workdir is None:
        return _search(cfg, acfg, None, dataset, progress, stop_after, log, t0)
    workdir = Path(workdir)
    _check_run_file(workdir, cfg, acfg)  # refuse a changed config before loading any data
    with WorkdirLock(workdir):
        return _search(cfg, acfg, workdir, dataset, progress, stop_after, log, t0)


def _search(cfg, acfg, workdir, dataset, progress, stop_after, log, t0) -> SearchRun:
    tc = cfg.train
    ds = dataset if dataset is not None else load_data(cfg)
    get_space(cfg.model.space).network().check_input_shape(ds.image_shape)
    weight_ds, arch_ds = split_halves(ds, tc.seed)
    net = network_from_config(cfg, ds.num_classes)
    per_epoch = min(fdata.num_batches(weight_ds, tc.batch_size), fdata.num_batches(arch_ds, tc.batch_size))
    if per_epoch == 0:
        raise ConfigError(f"train.batch_size={tc.batch_size} exceeds each half of the training set "
                          f"({arch_ds.num_train} images)")
    scheduled = per_epoch * tc.epochs
    total = scheduled if tc.max_steps is None else min(scheduled, tc.max_steps)
    tx = optimizer_from_config(cfg, scheduled, per_epoch)
    if acfg.grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(acfg.grad_clip), tx)
    state0, labels = steps.init_state(net, tc.seed, tuple(ds.image_shape), tx, param_mode=tc.params)
    arch_opt = arch_optimizer(acfg, arch_ds.num_train)
    from fbnas_jax.spaces import nb201 as nb201_space  # the one space with mixed-op edges so far

    shape = (nb201_space.NUM_EDGES, nb201_space.NUM_OPS)
    alpha = init_arch(jax.random.key(tc.seed + 7919), shape, acfg.arch_init_scale)
    state = SearchState(jnp.zeros((), jnp.int32), state0.params, state0.batch_stats, state0.opt_state, alpha,
                        arch_opt.init(alpha))
    ckpt = None
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = workdir / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(_run_record(cfg, acfg, ds), indent=2, sort_keys=True))
        os.replace(tmp, workdir / RUN_FILE)
        ckpt = Checkpointer(workdir / "checkpoints", keep=tc.keep_checkpoints)
        restored = ckpt.restore_latest(state, warn=lambda m: log(f"warning: {m}"))
        if restored is not None:
            state = restored
            log(f"resumed from step {int(state.step)} in {workdir}")
    xi = steps.learning_rate_schedule(learning_rate=tc.learning_rate, total_steps=scheduled, schedule=tc.schedule)
    weight_step = make_weight_step(net, tx, labels)
    arch_step = make_arch_step(net, arch_opt, algo=acfg.algo, seed=tc.seed, second_order=acfg.second_order,
                               xi=xi, weight_decay=tc.weight_decay)
    step, start = int(state.step), int(state.step)
    epochs: list[dict[str, Any]] = []
    if step < total:
        log(f"{acfg.algo}: compiling the weight and architecture steps (XLA; {cfg.model.channels} channels, "
            f"{cfg.model.cells_per_stage} cells/stage); {total - step} steps of {per_epoch} per epoch to go")
    try:
        while step < total:
            epoch, first = divmod(step, per_epoch)
            n_steps = min(per_epoch, total - epoch * per_epoch) - first
            sums: dict[str, Any] = {}
            e0 = time.perf_counter()
            wb = fdata.train_batches(weight_ds, tc.batch_size, seed=tc.seed, epoch=epoch, augment=cfg.data.augment,
                                     start_batch=first)
            ab = fdata.train_batches(arch_ds, tc.batch_size, seed=tc.seed + 1, epoch=epoch,
                                     augment=cfg.data.augment, start_batch=first)
            bar = tqdm(total=n_steps, disable=not progress, desc=f"{acfg.algo} epoch {epoch + 1}/{tc.epochs}",
                       unit="step", leave=False)
            for _, w_batch, a_batch in zip(range(n_steps), wb, ab):
                state, am = arch_step(state, w_batch, a_batch)
                state, wm = weight_step(state, w_batch)
                step += 1
                metrics = {**wm, **am}
                for k, v in metrics.items():
                    if k != "finite":
                        sums[k] = sums.get(k, 0.0) + v
                sums["finite"] = sums.get("finite", True) & wm["finite"] & am["finite"]
                bar.update(1)
                if step % tc.log_every == 0:
                    bar.set_postfix(loss=f"{float(wm['loss']):.3f}", arch_loss=f"{float(am['arch_loss']):.3f}")
                at_end = step - epoch * per_epoch == per_epoch or step == total
                if (step % tc.log_every == 0 or at_end) and not bool(sums["finite"]):
                    raise TrainingDivergedError(step, float(wm["loss"]), None)
                if ckpt is not None and (step % tc.checkpoint_every == 0 or at_end):
                    ckpt.save(step, state)
                if stop_after is not None and step - start >= stop_after:
                    bar.close()
                    return _result(cfg, acfg, net, state, arch_opt, ds, weight_ds, arch_ds, epochs, total, t0)
            bar.close()
            count = step - (epoch * per_epoch + first)
            if count:
                rec = {"epoch": epoch + 1, "steps": count, "seconds": round(time.perf_counter() - e0, 3),
                       **{k: float(v) / count for k, v in sums.items() if k != "finite"},
                       "arch": get_space(cfg.model.space).to_string(np.argmax(np.asarray(state.arch), -1))}
                epochs.append(rec)
                log(f"{acfg.algo} epoch {epoch + 1}/{tc.epochs}: loss {rec['loss']:.3f} acc {rec['accuracy']:.3f} "
                    f"arch_loss {rec['arch_loss']:.3f} ({rec['seconds']:.0f} s) argmax {rec['arch']}")
                if workdir is not None:
                    with open(workdir / EPOCHS_FILE, "a") as fh:
                        fh.write(json.dumps(rec) + "\n")
    finally:
        if ckpt is not None:
            ckpt.close()
    return _result(cfg, acfg, net, state, arch_opt, ds, weight_ds, arch_ds, epochs, total, t0)


def _result(cfg, acfg, net, state, arch_opt, ds, weight_ds, arch_ds, epochs, total, t0) -> SearchRun:
    return SearchRun(cfg, acfg, net, state, arch_opt, ds, weight_ds, arch_ds, epochs, total, time.perf_counter() - t0)


def weights_of(run: SearchRun) -> np.ndarray:
    """``softmax(arch)`` per edge (DARTS: the mixed-op weights; BaLeNAS: at the mean)."""
    return np.asarray(jax.nn.softmax(run.state.arch, axis=-1))


__all__ = ["SearchRun", "load_search_config", "search", "split_halves", "weights_of"]
