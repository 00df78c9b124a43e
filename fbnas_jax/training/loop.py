"""Orchestration: train a supernet (or one stand-alone net) from a :class:`Config`.

A *workdir* holds ``run.json`` (the config, with absolute data paths, and what the network
needs to be rebuilt: number of classes and input shape) and ``checkpoints/`` (orbax).
Training resumes from the newest usable checkpoint in the workdir. A workdir belongs to one
run: while training, it is locked (a second process gets :class:`WorkdirBusyError`), and a
resume whose config differs from ``run.json`` is refused with the list of differences
(:class:`RunMismatchError`) before any checkpoint is read or written. Everything random is a function of
``(train.seed, step)`` -- the data order, the augmentation, the sampled architectures -- so a
run killed and resumed ends bit-identical (on CPU) to an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from fbnas_jax import data as fdata
from fbnas_jax.config import Config, ConfigError, config_differences, from_dict
from fbnas_jax.spaces import get as get_space
from fbnas_jax.training import steps
from fbnas_jax.training.checkpoint import Checkpointer

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
RUN_KEYS = ("config", "num_classes", "input_shape")
# Keys a resumed run may change: they decide when to stop, log or save, or where caches
# live -- never what is computed (the schedule spans train.epochs; max_steps only stops early).
RESUMABLE_KEYS = ("train.max_steps", "train.log_every", "train.checkpoint_every", "train.keep_checkpoints",
                  "data.cache_dir", "data.data_dir")


class RunMismatchError(ConfigError):
    """The workdir holds a run of another config; ``differences`` lists ``key: old -> new``."""

    def __init__(self, workdir: Path, differences: list[str]):
        self.workdir, self.differences = workdir, differences
        super().__init__(
            f"{workdir} holds a run with another config ({len(differences)} difference(s): "
            f"{'; '.join(differences)}); resume it with its own config (run.json), or train this "
            "config in another --workdir (or pass --auto-workdir); nothing was changed")


class RunFileError(ConfigError):
    """``run.json`` is unreadable or lacks keys."""


class WorkdirBusyError(RuntimeError):
    """Another process is training in this workdir."""


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


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().absolute())


def with_absolute_paths(cfg: Config) -> Config:
    """``cfg`` with data paths made absolute (relative to the current directory), so that
    ``run.json`` works from any directory. ``data.source`` is a path when it names an existing
    file or directory or looks like one (contains a separator, ends in .tar.gz ...)."""
    from fbnas_jax.data.loader import SYNTHETIC_NAMES, TFDS_DATASETS, _looks_like_path

    d = cfg.data
    source = d.source
    if source.lower() not in SYNTHETIC_NAMES + tuple(TFDS_DATASETS) and (
            Path(source).expanduser().exists() or _looks_like_path(source)):
        source = _absolute(source)
    data = dataclasses.replace(d, source=source, data_dir=_absolute(d.data_dir), cache_dir=_absolute(d.cache_dir))
    return dataclasses.replace(cfg, data=data)


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


def read_run_file(workdir: str | Path) -> dict[str, Any]:
    """``run.json`` of a workdir, checked for the keys every reader needs (:class:`RunFileError`)."""
    path = Path(workdir) / RUN_FILE
    try:
        run = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunFileError(f"{path} is not valid JSON ({err}); it is written by `fbnas train-supernet`") from None
    if not isinstance(run, dict):
        raise RunFileError(f"{path} must hold a JSON object")
    missing = [k for k in RUN_KEYS if k not in run]
    if missing:
        raise RunFileError(f"{path} lacks the key(s) {missing}; it is written by `fbnas train-supernet` "
                           f"(needs {list(RUN_KEYS)})")
    try:
        run["config"] = from_dict(run["config"])
    except ConfigError as err:
        raise RunFileError(f"{path}: {err}") from None
    return run


def _check_or_write_run_file(workdir: Path, cfg: Config, ds: fdata.Dataset) -> None:
    """Write ``run.json``, or check that the one there describes this very run."""
    run = {"config": cfg.to_dict(), "num_classes": ds.num_classes,
           "input_shape": list(ds.train_images.shape[1:]), "dataset": ds.name}
    path = workdir / RUN_FILE
    if path.exists():
        old = read_run_file(workdir)
        diffs = config_differences(with_absolute_paths(old["config"]), cfg, ignore=RESUMABLE_KEYS)
        for key in ("num_classes", "input_shape"):
            if list(np.atleast_1d(old[key])) != list(np.atleast_1d(run[key])):
                diffs.append(f"{key} (of the data): {old[key]} -> {run[key]}")
        if diffs:
            raise RunMismatchError(workdir, diffs)
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(run, indent=2, sort_keys=True))
    os.replace(tmp, path)


class WorkdirLock:
    """An exclusive ``flock`` on ``workdir/.lock`` for the duration of a run.

    The kernel drops the lock when the process dies (even on ``kill -9``), so a stale lock
    never blocks a resume. The file holds the owner's pid for the message.
    """

    def __init__(self, workdir: Path):
        self.path = Path(workdir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> "WorkdirLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                os.close(fd)
                raise
            owner = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise WorkdirBusyError(f"{self.path.parent} is in use by another run ({owner}); wait for it to "
                                   "finish or use another --workdir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def free_workdir(workdir: str | Path, cfg: Config) -> Path:
    """``workdir`` if it is new or holds this config's run, else the first of ``workdir-2``,
    ``workdir-3``, ... that is (``--auto-workdir``: a changed config never overwrites a run)."""
    base = Path(workdir)
    for i in range(1, 10_000):
        cand = base if i == 1 else base.with_name(f"{base.name}-{i}")
        if not (cand / RUN_FILE).exists():
            return cand
        try:
            old = read_run_file(cand)
        except ConfigError:
            continue
        if not config_differences(with_absolute_paths(old["config"]), cfg, ignore=RESUMABLE_KEYS):
            return cand
    raise RuntimeError(f"no free workdir next to {base}")


def train(cfg: Config, workdir: str | Path | None = None, *, dataset: fdata.Dataset | None = None,
          progress: bool = True, stop_after: int | None = None,
          log: Callable[[str], None] = print) -> TrainResult:
    """Train per ``cfg``; checkpoint into and resume from ``workdir`` when given.

    ``stop_after`` ends the run after that many steps *of this call* without a final save,
    like a killed process (used to test resumption).
    """
    t0 = time.perf_counter()
    cfg = with_absolute_paths(cfg)
    if workdir is None:
        return _train(cfg, None, dataset, progress, stop_after, log, t0)
    workdir = Path(workdir)
    if (workdir / RUN_FILE).exists():  # refuse a changed config before loading any data
        old = read_run_file(workdir)
        diffs = config_differences(with_absolute_paths(old["config"]), cfg, ignore=RESUMABLE_KEYS)
        if diffs:
            raise RunMismatchError(workdir, diffs)
    with WorkdirLock(workdir):
        return _train(cfg, workdir, dataset, progress, stop_after, log, t0)


def _train(cfg, workdir, dataset, progress, stop_after, log, t0) -> TrainResult:
    ds = dataset if dataset is not None else load_data(cfg)
    check_input_shape = getattr(get_space(cfg.model.space).network(), "check_input_shape", None)
    try:  # optional part of the network contract: which image sizes the network accepts
        if check_input_shape is not None:
            check_input_shape(ds.image_shape)
    except ValueError as err:
        raise fdata.DatasetError(f"dataset {ds.name!r}: {err}") from None
    net = network_from_config(cfg, ds.num_classes)
    per_epoch, scheduled, total = plan_steps(cfg, ds)
    tc = cfg.train
    tx = optimizer_from_config(cfg, scheduled)
    state, labels = steps.init_state(net, tc.seed, ds.train_images.shape[1:], tx,
                                     param_mode=tc.params)
    ckpt = None
    last_saved = None
    if workdir is not None:
        _check_or_write_run_file(workdir, cfg, ds)
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
    bar = None
    step = start
    if step < total:
        log(f"compiling the training step (XLA; {cfg.model.channels} channels, "
            f"{cfg.model.cells_per_stage} cells/stage) ...")
    t_compile = time.perf_counter()
    try:
        while step < total:
            epoch, first = divmod(step, per_epoch)
            for batch in fdata.train_batches(ds, tc.batch_size, seed=tc.seed, epoch=epoch,
                                             augment=cfg.data.augment, start_batch=first):
                state, metrics = train_step(state, batch, train_step.group_of(step))
                step += 1
                if not bool(metrics["finite"]):
                    raise TrainingDivergedError(step, float(metrics["loss"]), last_saved)
                if bar is None:  # the first step includes the compilation
                    log(f"compiled and ran the first step in {time.perf_counter() - t_compile:.1f} s; "
                        f"{total - step} steps to go")
                    bar = tqdm(total=total, initial=step - 1, disable=not progress, desc="train", unit="step",
                               leave=False)
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
        if bar is not None:
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
    run = read_run_file(workdir)
    cfg = run["config"]
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

