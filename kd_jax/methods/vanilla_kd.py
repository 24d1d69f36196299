"""Vanilla knowledge distillation (Hinton et al., 2015) from one teacher or an ensemble.

PAPERS.md §0 and §6 (Stanton et al., 2021): the student matches the softened prediction of the
teacher ensemble's mean, z_t = log((1/m) Σ_i σ(z_i)), computed on exactly the same (augmented or
mixed) batch the student sees — the trainer feeds both models the same input.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from kd_jax.losses import logits as logit_losses
from kd_jax.methods import base


@dataclasses.dataclass(frozen=True)
class VanillaKD(base.Method):
  """L = α·CE(y, σ(z_s)) + (1−α)·τ²·KL(σ(z_t/τ) ‖ σ(z_s/τ)), averaged over the batch.

  Attributes:
    temperature: τ > 0 (Stanton et al. use τ = 4).
    alpha: weight α ∈ [0, 1] of the hard-label cross-entropy (α = 0: pure distillation, which
      also works without labels).
  """

  uses_teacher: ClassVar[bool] = True
  temperature: float = 4.0
  alpha: float = 0.0

  def __post_init__(self):
    if self.temperature <= 0:
      raise ValueError(f"vanilla_kd: temperature must be positive, got {self.temperature}.")
    if not 0.0 <= self.alpha <= 1.0:
      raise ValueError(f"vanilla_kd: alpha must be in [0, 1], got {self.alpha}.")

  def loss(self, params, state, io):
    del params, state
    student_logits = io.student["logits"]
    teacher_logits = base.teacher_ensemble_logits(io.teachers)
    kd = jnp.mean(
        logit_losses.hinton_kd(student_logits, teacher_logits, temperature=self.temperature)
    )
    metrics = {"kd": kd}
    loss = (1.0 - self.alpha) * kd
    # Skip the CE graph entirely for α = 0 so label-free distillation data works.
    if self.alpha > 0:
      ce = jnp.mean(logit_losses.cross_entropy(student_logits, io.batch["label"]))
      metrics["ce"] = ce
      loss = loss + self.alpha * ce
    return loss, base.Aux(metrics=metrics)
