"""Orchestration: train a supernet (or one stand-alone net) from a :class:`Config`.

A *workdir* holds ``run.json`` (the config and what the network needs to be rebuilt:
number of classes and input shape) and ``checkpoints/`` (orbax). Training resumes from the
newest usable checkpoint in the workdir. Everything random is a function of
``(train.seed, step)`` -- the data order, the augmentation, the sampled architectures -- so a
run killed and resumed ends bit-identical (on CPU) to an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from fbnas_jax import data as fdata
from fbnas_jax.config import Config, ConfigError, from_dict
from fbnas_jax.spaces import get as get_space
from fbnas_jax.training import steps
from fbnas_jax.training.checkpoint import Checkpointer

RUN_FILE = "run.json"


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""

    def __init__(self, step: int, loss: float, checkpoint_step: int | None):
        kept = (f"the last good checkpoint (step {checkpoint_step}) is kept" if checkpoint_step is not None
                else "no checkpoint was written")
        super().__init__(f"training diverged at step {step}: loss = {loss}; stopped, {kept}")
        self.step, self.loss, self.checkpoint_step = step, loss, checkpoint_step


@dataclasses.dataclass
class TrainResult:
    net: Any  # the Flax network of cfg.model.space
    state: steps.TrainState
    labels: Any
    dataset: fdata.Dataset
    history: list[dict[str, float]]
    total_steps: int
    seconds: float

    @property
    def variables(self) -> dict[str, Any]:
        return self.state.variables


def network_from_config(cfg: Config, num_classes: int):
    """The Flax network of ``cfg.model.space`` (its ``build_network``, see :mod:`fbnas_jax.spaces.base`)."""
    m = cfg.model
    space = get_space(m.space)
    if cfg.train.sampler == "fixed" and m.arch is None:
        raise ConfigError(f"train.sampler=fixed trains a stand-alone network: set model.arch to a {space.string_name}")
    if cfg.train.sampler != "fixed" and m.arch is not None:
        raise ConfigError("model.arch is set (a stand-alone network): use train.sampler=fixed")
    return space.network().build_network(m, num_classes)


def load_data(cfg: Config) -> fdata.Dataset:
    d = cfg.data
    return fdata.load_dataset(d.source, data_dir=d.data_dir, cache_dir=d.cache_dir, subset=d.subset,
                              seed=cfg.train.seed)


def plan_steps(cfg: Config, ds: fdata.Dataset) -> tuple[int, int, int]:
    """(steps per epoch, scheduled steps, steps to run).

    The learning-rate schedule always spans ``epochs``; ``max_steps`` only stops early, so a
    smoke run follows the same schedule as the full run it previews.
    """
    per_epoch = fdata.num_batches(ds, cfg.train.batch_size)
    if per_epoch == 0:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} exceeds the training set ({ds.num_train})")
    scheduled = per_epoch * cfg.train.epochs
    total = scheduled if cfg.train.max_steps is None else min(scheduled, cfg.train.max_steps)
    return per_epoch, scheduled, total


def optimizer_from_config(cfg: Config, total_steps: int):
    tc = cfg.train
    return steps.make_optimizer(learning_rate=tc.learning_rate, total_steps=total_steps, momentum=tc.momentum,
                                nesterov=tc.nesterov, weight_decay=tc.weight_decay, schedule=tc.schedule)


def _write_run_file(workdir: Path, cfg: Config, ds: fdata.Dataset) -> None:
    run = {"config": cfg.to_dict(), "num_classes": ds.num_classes,
           "input_shape": list(ds.train_images.shape[1:]), "dataset": ds.name}
    path = workdir / RUN_FILE
    if path.exists():
        old = json.loads(path.read_text())
        if old["config"]["model"] != run["config"]["model"] or old["num_classes"] != run["num_classes"]:
            raise ConfigError(f"{workdir} holds a run of another model/dataset "
                              f"({old['config']['model']}); use a fresh --workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=2, sort_keys=True))


def train(cfg: Config, workdir: str | Path | None = None, *, dataset: fdata.Dataset | None = None,
          progress: bool = True, stop_after: int | None = None,
          log: Callable[[str], None] = print) -> TrainResult:
    """Train per ``cfg``; checkpoint into and resume from ``workdir`` when given.

    ``stop_after`` ends the run after that many steps *of this call* without a final save,
    like a killed process (used to test resumption).
    """
    t0 = time.perf_counter()
    ds = dataset if dataset is not None else load_data(cfg)
    net = network_from_config(cfg, ds.num_classes)
    per_epoch, scheduled, total = plan_steps(cfg, ds)
    tc = cfg.train
    tx = optimizer_from_config(cfg, scheduled)
    state, labels = steps.init_state(net, tc.seed, ds.train_images.shape[1:], tx,
                                     param_mode=tc.params)
    ckpt = None
    last_saved = None
    if workdir is not None:
        workdir = Path(workdir)
        _write_run_file(workdir, cfg, ds)
        ckpt = Checkpointer(workdir / "checkpoints", keep=tc.keep_checkpoints)
        restored = ckpt.restore_latest(state, warn=lambda m: log(f"warning: {m}"))
        if restored is not None:
            state = restored
            last_saved = int(state.step)
            log(f"resumed from step {last_saved} in {workdir}")
    train_step = steps.make_train_step(net, tx, labels, sampler=tc.sampler, seed=tc.seed,
                                       label_smoothing=tc.label_smoothing)
    history: list[dict[str, float]] = []
    start = int(state.step)
    bar = tqdm(total=total, initial=start, disable=not progress, desc="train", unit="step", leave=False)
    step = start
    try:
        while step < total:
            epoch, first = divmod(step, per_epoch)
            for batch in fdata.train_batches(ds, tc.batch_size, seed=tc.seed, epoch=epoch,
                                             augment=cfg.data.augment, start_batch=first):
                state, metrics = train_step(state, batch, train_step.group_of(step))
                step += 1
                if not bool(metrics["finite"]):
                    raise TrainingDivergedError(step, float(metrics["loss"]), last_saved)
                if step % tc.log_every == 0 or step == total:
                    m = {"step": step, "loss": float(metrics["loss"]), "accuracy": float(metrics["accuracy"])}
                    history.append(m)
                    bar.set_postfix(loss=f"{m['loss']:.3f}", acc=f"{m['accuracy']:.3f}")
                bar.update(1)
                if ckpt is not None and (step % tc.checkpoint_every == 0 or step == total):
                    ckpt.save(step, state)
                    last_saved = step
                if stop_after is not None and step - start >= stop_after:
                    return TrainResult(net, state, labels, ds, history, total, time.perf_counter() - t0)
                if step >= total:
                    break
    finally:
        bar.close()
        if ckpt is not None:
            ckpt.close()
    return TrainResult(net, state, labels, ds, history, total, time.perf_counter() - t0)


@dataclasses.dataclass
class LoadedRun:
    config: Config
    net: Any
    variables: dict[str, Any]
    num_classes: int
    input_shape: tuple[int, ...]
    step: int


def load_run(workdir: str | Path) -> LoadedRun:
    """Rebuild the network of a workdir and restore its newest usable checkpoint."""
    workdir = Path(workdir)
    run_path = workdir / RUN_FILE
    if not run_path.is_file():
        raise FileNotFoundError(f"{workdir} is not a training workdir (no {RUN_FILE}); "
                                "train one with `fbnas train-supernet --workdir ...`")
    run = json.loads(run_path.read_text())
    cfg = from_dict(run["config"])
    net = network_from_config(cfg, run["num_classes"])
    tx = optimizer_from_config(cfg, total_steps=1)
    template = jax.eval_shape(  # shapes only: nothing is initialised or compiled
        lambda: steps.init_state(net, 0, run["input_shape"], tx, param_mode=cfg.train.params)[0])
    ckpt = Checkpointer(workdir / "checkpoints")
    try:
        state = ckpt.restore_latest(template)
    finally:
        ckpt.close()
    if state is None:
        raise FileNotFoundError(f"no usable checkpoint in {workdir / 'checkpoints'}")
    return LoadedRun(cfg, net, jax.device_get(state.variables), run["num_classes"],
                     tuple(run["input_shape"]), int(np.asarray(state.step)))

