"""A run that diverges at a chosen step, for the tests of what the non-finite guard reports.

python -m experiments.main --config=tests/reliability/diverging_run.py --workdir=DIR
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import ml_collections

from kd_jax import methods
from tests.train import helpers


@dataclasses.dataclass(frozen=True)
class DivergesAt(methods.Supervised):
  """Supervised until optimiser step `step` (the loop's step `step + 1`), NaN from there on."""

  step: int = 4

  def loss(self, params, state, io):
    loss, aux = super().loss(params, state, io)
    return loss * jnp.where(io.step >= self.step, jnp.nan, 1.0), aux


def get_config(arg: str = "4"):
  """Checkpoints every 4 steps (asynchronously), diverging at the loop's step `int(arg) + 1`."""
  c = helpers.tiny_config(total_steps=12, checkpoint_every=4, async_checkpointing=True)
  c.method = ml_collections.ConfigDict(
      {"name": "tests.reliability.diverging_run:DivergesAt", "step": int(arg)}
  )
  return c
