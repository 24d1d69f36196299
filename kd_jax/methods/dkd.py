"""DKD: decoupled knowledge distillation (Zhao, Cui, Song, Qiu, Liang; CVPR 2022), a logit
baseline of the method zoo table.

Hinton's KD splits into a target-class term and a non-target term whose weight is the teacher's
non-target mass: KD = TCKD + (1 − p^T_y)·NCKD (the paper's Eq. 4). DKD decouples them,

    L = w_ce·CE + min(epoch / E_w, 1) · (α·TCKD + β·NCKD),

(`kd_jax.losses.logits.tckd` / `nckd`, both with the τ² factor), so a confident teacher no longer
switches off the non-target knowledge. The loss weight ramps up linearly over the first E_w epochs
(fractional epochs here; the paper's code counts whole epochs from 1).

Defaults are the paper's CIFAR-100 settings (official code, mdistiller `configs/cifar100/dkd/`):
α = 1, β = 8, τ = 4, E_w = 20 of 240 epochs, CE weight 1; its resnet56 → resnet20 config uses
β = 2.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from kd_jax.losses import logits as logit_losses
from kd_jax.methods import base


def warmup_factor(step, context: base.RunContext, warmup_epochs: float):
  """min(epoch / E_w, 1) at optimiser step `step` (fractional epochs); 1 when E_w = 0."""
  if warmup_epochs <= 0:
    return jnp.float32(1.0)
  return jnp.minimum(context.epoch(step) / warmup_epochs, 1.0).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class DKD(base.Method):
  """Attributes:
  alpha: α, the TCKD weight; beta: β, the NCKD weight; temperature: τ.
  warmup_epochs: E_w, epochs of the linear ramp of the distillation weight (scale it with the run).
  ce_weight: the weight of the hard-label cross-entropy.
  """

  uses_teacher: ClassVar[bool] = True
  alpha: float = 1.0
  beta: float = 8.0
  temperature: float = 4.0
  warmup_epochs: float = 20.0
  ce_weight: float = 1.0

  def __post_init__(self):
    if min(self.alpha, self.beta, self.ce_weight, self.warmup_epochs) < 0:
      raise ValueError("dkd: alpha, beta, ce_weight and warmup_epochs must be >= 0.")
    if self.temperature <= 0:
      raise ValueError(f"dkd: temperature must be positive, got {self.temperature}.")

  def loss(self, params, state, io):
    del params, state
    student_logits, labels = io.student["logits"], io.batch["label"]
    teacher_logits = base.teacher_ensemble_logits(io.teachers)
    metrics = {
        "tckd": jnp.mean(
            logit_losses.tckd(student_logits, teacher_logits, labels, temperature=self.temperature)
        ),
        "nckd": jnp.mean(
            logit_losses.nckd(student_logits, teacher_logits, labels, temperature=self.temperature)
        ),
        "ce": jnp.mean(logit_losses.cross_entropy(student_logits, labels)),
        "dkd_warmup": warmup_factor(io.step, io.context, self.warmup_epochs),
    }
    distill = self.alpha * metrics["tckd"] + self.beta * metrics["nckd"]
    loss = self.ce_weight * metrics["ce"] + metrics["dkd_warmup"] * distill
    return loss, base.Aux(metrics=metrics)
