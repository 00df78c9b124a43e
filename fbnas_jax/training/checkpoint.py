"""Orbax checkpoints of a :class:`TrainState`, with fallback past corrupt ones.

The state is saved as a plain nested dict (``flax.serialization.to_state_dict``), so the
files do not depend on optax's state classes, and restored into a template built from the
same config. Orbax writes each step to a temporary directory and renames it when complete,
so a run killed mid-save leaves no half-written step; a step that is corrupt for another
reason (truncated or deleted files) fails to restore and the previous step is used instead,
with a message.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

log = logging.getLogger(__name__)


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
        self._manager.save(int(step), args=ocp.args.StandardSave(tree), force=True)
        self._manager.wait_until_finished()

    def restore_latest(self, template: Any, warn: Callable[[str], None] | None = None) -> Any | None:
        """Newest restorable state, or None when there is no checkpoint at all."""
        warn = warn or log.warning
        target = serialization.to_state_dict(template)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), target)
        for step in reversed(self.steps()):
            try:
                restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
                state = serialization.from_state_dict(template, restored)
            except Exception as err:  # noqa: BLE001 -- any failure means "this step is unusable"
                warn(f"checkpoint at step {step} in {self.directory} is corrupt or incomplete "
                     f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); trying an older one")
                continue
            if int(np.asarray(state.step)) != step:
                warn(f"checkpoint directory {step} holds step {int(np.asarray(state.step))}; skipping it")
                continue
            return state
        if self.steps():
            warn(f"no usable checkpoint in {self.directory}; starting from scratch")
        return None

    def close(self) -> None:
        self._manager.close()
