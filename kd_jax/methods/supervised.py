"""Supervised training with cross-entropy: trains teachers and the "student from scratch" rows."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from kd_jax.losses import logits as logit_losses
from kd_jax.methods import base


@dataclasses.dataclass(frozen=True)
class Supervised(base.Method):
  """L = mean_i CE(y_i, σ(z_s(x_i))), optionally with label smoothing ε.

  Teachers given in the config are not run in the train step (`uses_teacher = False`), but the
  default `eval_metrics` still reports agreement / predictive KL against them, which is how the
  fidelity tables compare a CE-trained student with the teacher.
  """

  label_smoothing: float = 0.0

  def __post_init__(self):
    if not 0.0 <= self.label_smoothing < 1.0:
      raise ValueError(
          f"supervised: label_smoothing must be in [0, 1), got {self.label_smoothing}."
      )

  def loss(self, params, state, io):
    del params, state
    ce = jnp.mean(
        logit_losses.cross_entropy(
            io.student["logits"], io.batch["label"], label_smoothing=self.label_smoothing
        )
    )
    return ce, base.Aux(metrics={"ce": ce})
