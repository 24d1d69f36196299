"""The shipped smoke config fits 1, 2, 4 and 8 devices (the README's simulated-device runs): its
batch sizes divide evenly over each mesh, for every stage."""

import types

import numpy as np
import pytest

from experiments.configs import smoke
from kd_jax.train import mesh as mesh_lib


@pytest.mark.parametrize("variant", ["cpu", "tiny"])
@pytest.mark.parametrize("devices", [1, 2, 4, 8])
def test_smoke_batches_divide_over_the_devices(variant, devices):
  fake_mesh = types.SimpleNamespace(devices=np.empty(devices))
  config = smoke.get_config(variant)
  for name in config.stage_order:
    stage = config.stages[name]
    mesh_lib.check_batch_size(stage.batch_size // stage.get("grad_accum_steps", 1), fake_mesh)
    mesh_lib.check_batch_size(stage.eval_batch_size, fake_mesh, "eval_batch_size")


def test_the_check_refuses_what_used_to_ship():
  with pytest.raises(
      ValueError, match=r"eval_batch_size=250 must be divisible by the number of " r"devices \(8\)"
  ):
    mesh_lib.check_batch_size(250, types.SimpleNamespace(devices=np.empty(8)), "eval_batch_size")
