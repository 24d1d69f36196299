"""Data parallelism over a `jax.sharding.Mesh` spanning every device of every host.

The batch is split along the "data" mesh axis; params, optimiser state, method state and the
teachers are replicated. This is big_vision's default data-parallel layout; it needs no code
changes between one CPU, a GPU host and a TPU pod (after `jax.distributed.initialize()`).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed(enabled: bool) -> None:
  """Connects the hosts of a multi-host run (TPU pod, multi-node GPU); a no-op when disabled.

  Must run before anything touches the devices; safe to call again (staged runs). On clusters
  JAX detects (TPU, SLURM, Open MPI, ...) no settings are needed. Elsewhere — several processes
  on one machine, a test — set JAX_COORDINATOR_ADDRESS (read by JAX) and JAX_NUM_PROCESSES /
  JAX_PROCESS_ID (read here) in each process's environment.
  """
  if enabled and not jax.distributed.is_initialized():
    settings = {}
    for key, variable in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
      if os.environ.get(variable):
        try:
          settings[key] = int(os.environ[variable])
        except ValueError as error:
          raise ValueError(
              f"{variable} must be an integer, got " f"{os.environ[variable]!r}."
          ) from error
    jax.distributed.initialize(**settings)


def make_mesh() -> Mesh:
  """A 1-D mesh over all global devices, named `DATA_AXIS`."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split across the data axis, other axes whole."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh, what: str = "batch_size") -> None:
  devices = mesh.devices.size
  if global_batch_size % devices or global_batch_size % jax.process_count():
    raise ValueError(
        f"{what}={global_batch_size} must be divisible by the number of devices ({devices}) and "
        f"of processes ({jax.process_count()}) for data-parallel sharding."
    )


def shard_batch(local_batch: dict[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles each host's slice of the batch into global arrays sharded on the data axis.

  Non-numeric entries (strings, objects) cannot live on a device and are dropped.
  """
  sharding = batch_sharded(mesh)
  out = {}
  for key, value in local_batch.items():
    value = np.asarray(value)
    if value.dtype.kind not in "biuf":
      continue
    out[key] = jax.make_array_from_process_local_data(sharding, value)
  return out


def replicate(tree: Any, mesh: Mesh) -> Any:
  return jax.device_put(tree, replicated(mesh))
