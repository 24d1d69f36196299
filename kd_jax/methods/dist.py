"""DIST: distillation from a stronger teacher (Huang, You, Wang, Qian, Xu; NeurIPS 2022), a logit
baseline of the method zoo table.

Exact KL matching is hard when the teacher is much stronger; DIST only asks the student to keep
the teacher's *relations*, measured by Pearson correlation of the softened predictions
Y = σ(Z/τ): between classes within each example (inter-class, `dist_inter_class`) and between the
examples of the batch within each class (intra-class, `dist_intra_class`, so the loss couples the
batch):

    L = w_ce·CE + w·τ²·(β·mean_i(1 − ρ(Y^S_i,:, Y^T_i,:)) + γ·mean_c(1 − ρ(Y^S_:,c, Y^T_:,c))).

Defaults are the official CIFAR-100 recipe (`configs/strategies/distill/dist_cifar.yaml` of the
authors' code): β = γ = 1, τ = 4, distillation weight w = 2, CE weight 1 (the loss module's own
defaults are β = γ = τ = 1).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from kd_jax.losses import logits as logit_losses
from kd_jax.methods import base


@dataclasses.dataclass(frozen=True)
class DIST(base.Method):
  """Attributes:
  beta: β, the inter-class weight; gamma: γ, the intra-class weight; temperature: τ.
  weight: w, the weight of the whole DIST term; ce_weight: of the hard-label cross-entropy.
  """

  uses_teacher: ClassVar[bool] = True
  batch_dependent: ClassVar[bool] = True  # intra-class correlations span the batch
  beta: float = 1.0
  gamma: float = 1.0
  temperature: float = 4.0
  weight: float = 2.0
  ce_weight: float = 1.0

  def __post_init__(self):
    if min(self.beta, self.gamma, self.weight, self.ce_weight) < 0:
      raise ValueError("dist: beta, gamma, weight and ce_weight must be >= 0.")
    if self.temperature <= 0:
      raise ValueError(f"dist: temperature must be positive, got {self.temperature}.")

  def loss(self, params, state, io):
    del params, state
    student_logits = io.student["logits"]
    teacher_logits = base.teacher_ensemble_logits(io.teachers)
    tau = self.temperature
    metrics = {
        "inter_class": jnp.mean(
            logit_losses.dist_inter_class(student_logits, teacher_logits, temperature=tau)
        ),
        "intra_class": jnp.mean(
            logit_losses.dist_intra_class(student_logits, teacher_logits, temperature=tau)
        ),
    }
    loss = self.weight * (self.beta * metrics["inter_class"] + self.gamma * metrics["intra_class"])
    if self.ce_weight > 0:
      metrics["ce"] = jnp.mean(logit_losses.cross_entropy(student_logits, io.batch["label"]))
      loss = loss + self.ce_weight * metrics["ce"]
    return loss, base.Aux(metrics=metrics)
