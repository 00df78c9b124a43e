"""Orbax checkpoints of a :class:`TrainState`, with fallback past corrupt ones.

The state is saved as a plain nested dict (``flax.serialization.to_state_dict``), so the
files do not depend on optax's state classes, and restored into a template built from the
same config. Orbax writes each step to a temporary directory and renames it when complete,
so a run killed mid-save leaves no half-written step; a step that is corrupt for another
reason (truncated or deleted files) fails to restore and the previous step is used instead,
with a message.

A checkpoint that reads fine but holds another tree than the template (other channels,
cells, BN mode or trainable-parameter set) is not "corrupt": :class:`IncompatibleCheckpointError`
says which arrays differ, and nothing falls back or starts over. A save that fails (disk
full) raises :class:`CheckpointWriteError` naming the directory; older steps stay intact.
"""
from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from fbnas_jax.runtime import no_space_error

log = logging.getLogger(__name__)


class IncompatibleCheckpointError(ValueError):
    """The checkpoint was written by another network / optimiser than the template's config."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. no space left); older checkpoints are intact."""


class UnreadableCheckpointsError(RuntimeError):
    """Every checkpoint in the directory failed to restore; nothing is overwritten."""


def _leaves(tree) -> dict[str, tuple[tuple[int, ...], str]]:
    return {jax.tree_util.keystr(p): (tuple(np.shape(v)), str(np.dtype(getattr(v, "dtype", np.asarray(v).dtype))))
            for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def tree_differences(stored, expected, limit: int = 3) -> list[str]:
    """Human-readable differences between two trees of arrays (paths, shapes, dtypes)."""
    a, b = _leaves(stored), _leaves(expected)
    out = []
    missing, extra = sorted(set(b) - set(a)), sorted(set(a) - set(b))
    shape = sorted(k for k in set(a) & set(b) if a[k] != b[k])
    if shape:
        ex = "; ".join(f"{k}: checkpoint {a[k][0]} vs config {b[k][0]}" for k in shape[:limit])
        out.append(f"{len(shape)} array(s) of another shape or dtype ({ex})")
    if missing:
        out.append(f"{len(missing)} array(s) the config expects are absent (e.g. {', '.join(missing[:limit])})")
    if extra:
        out.append(f"{len(extra)} array(s) the config does not have (e.g. {', '.join(extra[:limit])})")
    return out


class Checkpointer:
    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False,
                                                 create=True),
        )

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any) -> None:
        tree = serialization.to_state_dict(jax.device_get(state))
        try:
            self._manager.save(int(step), args=ocp.args.StandardSave(tree), force=True)
            self._manager.wait_until_finished()
        except Exception as err:  # noqa: BLE001 -- say what failed in one line, keep the cause chained
            full = no_space_error(err)
            kept = self.steps()
            older = f"older checkpoints (steps {kept}) are intact" if kept else "no older checkpoint exists"
            reason = "no space left on device" if full is not None else f"{type(err).__name__}: {err}"
            error = CheckpointWriteError(f"cannot write checkpoint step {step} to {self.directory}: {reason}; "
                                         f"{older}")
            error.errno = full.errno if full is not None else errno.EIO
            raise error from err

    def restore_latest(self, template: Any, warn: Callable[[str], None] | None = None) -> Any | None:
        """Newest restorable state, or None when there is no checkpoint at all.

        A step that fails to read is skipped with a warning (the next older one is tried);
        a step that reads but does not match ``template`` raises
        :class:`IncompatibleCheckpointError`; when every step fails to read,
        :class:`UnreadableCheckpointsError` (never a silent fresh start over them).
        """
        warn = warn or log.warning
        target = serialization.to_state_dict(template)
        all_steps = self.steps()
        for step in reversed(all_steps):
            try:  # read what is stored, whatever its structure, then compare with the template
                restored = self._manager.restore(step, args=ocp.args.StandardRestore())
            except Exception as err:  # noqa: BLE001 -- any read failure means "this step is unusable"
                warn(f"checkpoint at step {step} in {self.directory} is corrupt or incomplete "
                     f"({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}); "
                     "trying an older one")
                continue
            diffs = tree_differences(restored, target)
            if diffs:
                raise IncompatibleCheckpointError(
                    f"checkpoint at step {step} in {self.directory} was written by another network or "
                    f"optimiser than the config describes: {'; '.join(diffs)}. Check model.channels, "
                    "model.cells_per_stage, model.bn_mode, train.params and the data's classes against "
                    "the run that wrote it")
            try:
                state = serialization.from_state_dict(template, restored)
            except Exception as err:  # noqa: BLE001
                warn(f"checkpoint at step {step} in {self.directory} is corrupt or incomplete "
                     f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); trying an older one")
                continue
            if int(np.asarray(state.step)) != step:
                warn(f"checkpoint directory {step} holds step {int(np.asarray(state.step))}; skipping it")
                continue
            return state
        if all_steps:
            raise UnreadableCheckpointsError(
                f"none of the checkpoints in {self.directory} (steps {all_steps}) can be read; they are left "
                "as they are: move them away to start afresh, or use another --workdir")
        return None

    def close(self) -> None:
        self._manager.close()
