"""Data-parallel training over a ``jax.sharding`` mesh, on one host or several.

The batch axis of every input batch is split over a 1-D mesh ``('data',)`` of all devices;
the train state (parameters, BN statistics, optimiser state) is replicated. The jitted train
step is unchanged: XLA partitions it from the input shardings (GSPMD), so the loss and the
gradients are means over the *global* batch and every BatchNorm normalises with statistics
of the global batch (synchronised BN) -- the same numbers as one device running the whole
batch, up to float summation order (a test checks with 4 forced host devices).

Several hosts: call :func:`initialize` first on every host (``jax.distributed.initialize``
from the usual environment variables); each host then feeds only *its* part of every batch
(``local_batch_size = global / process_count``), assembled into one global array by
:func:`shard_batch`. The command a user runs on each host::

    JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=<0|1> \\
        fbnas train-supernet --config configs/mobilenet_imagenet.yaml train.devices=all

(on SLURM / Cloud TPU / Open MPI jobs JAX finds these itself).
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize() -> bool:
    """``jax.distributed.initialize`` when the environment describes a multi-host job.

    Reads ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` (all three, or
    none); a job with only one process is left alone. Returns whether it initialised.
    """
    given = [k for k in _ENV if os.environ.get(k)]
    if not given:
        return False
    if len(given) != len(_ENV):
        missing = sorted(set(_ENV) - set(given))
        raise RuntimeError(f"multi-host setup: {', '.join(given)} set but {', '.join(missing)} missing")
    if int(os.environ["JAX_NUM_PROCESSES"]) <= 1:
        return False
    jax.distributed.initialize(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                               num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                               process_id=int(os.environ["JAX_PROCESS_ID"]))
    return True


def resolve_devices(spec: str | int | None) -> list:
    """``"all"`` / None-with-several-devices -> every device; an int ``n`` -> the first ``n``."""
    devices = jax.devices()
    if spec in (None, "", "1", 1):
        return devices[:1]
    if spec == "all":
        return devices
    try:
        n = int(spec)
    except (TypeError, ValueError):
        raise ValueError(f"devices must be 'all' or a positive integer, got {spec!r}") from None
    if not 1 <= n <= len(devices):
        raise ValueError(f"devices={n}: only {len(devices)} device(s) available")
    return devices[:n]


def data_mesh(devices: list | None = None) -> Mesh:
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf fully replicated on the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """This host's share of a global batch (must divide evenly over devices and hosts)."""
    n_dev = mesh.devices.size
    if global_batch_size % n_dev:
        raise ValueError(f"batch size {global_batch_size} does not split over {n_dev} devices")
    return global_batch_size // jax.process_count()


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This host's part of the batch -> global arrays sharded on their leading axis."""
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    if jax.process_count() == 1:
        return {k: jax.device_put(np.asarray(v), sharding) for k, v in batch.items()}
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


class DataParallel:
    """What the training loop needs: replicate the state, split every batch over the mesh."""

    def __init__(self, mesh: Mesh, global_batch_size: int):
        self.mesh = mesh
        self.global_batch_size = int(global_batch_size)
        self.local_batch_size = local_batch_size(global_batch_size, mesh)

    @classmethod
    def from_config(cls, cfg) -> "DataParallel | None":
        """None for one device on one host (the plain jitted step, nothing changes)."""
        devices = resolve_devices(cfg.train.devices) if jax.process_count() == 1 else jax.devices()
        if len(devices) == 1 and jax.process_count() == 1:
            return None
        return cls(data_mesh(devices), cfg.train.batch_size)

    def describe(self) -> str:
        return (f"{self.mesh.devices.size} {jax.devices()[0].platform} devices on {jax.process_count()} host(s) "
                f"({self.global_batch_size // self.mesh.devices.size} images each)")

    def replicate(self, tree: Any) -> Any:
        return replicate(tree, self.mesh)

    def shard(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """A global batch (every host holds the same one) or this host's part -> sharded arrays."""
        first = next(iter(batch.values()))
        if jax.process_count() > 1 and len(first) == self.global_batch_size:
            lo = jax.process_index() * self.local_batch_size
            batch = {k: v[lo:lo + self.local_batch_size] for k, v in batch.items()}
        return shard_batch(batch, self.mesh)
