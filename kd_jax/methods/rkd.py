"""RKD: relational knowledge distillation (Park et al., CVPR 2019), a baseline of several tables.

The student's pooled embeddings keep the teacher's pairwise distances and triplet angles
(`kd_jax.losses.relational.rkd_distance` / `rkd_angle`), added to the task loss.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from kd_jax.losses import logits as logit_losses
from kd_jax.losses import relational
from kd_jax.methods import base


@dataclasses.dataclass(frozen=True)
class RelationalKD(base.Method):
  """RKD loss on the pooled embeddings (docs/PAPERS.md "Baselines"), plus optional KD and CE.

  L = w_d·RKD-D(s, t) + w_a·RKD-A(s, t) + w_kd·τ²KL(σ(z_T/τ)‖σ(z_S/τ)) + w_ce·CE on the pooled
  embeddings of the batch (RKD's own weights are 25 and 50; the paper adds them to the task loss).
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"logits", "embedding"})
  batch_dependent: ClassVar[bool] = True  # distances and angles between examples of a batch
  distance_weight: float = 25.0
  angle_weight: float = 50.0
  kd_weight: float = 0.0
  kd_temperature: float = 2.0
  ce_weight: float = 1.0

  def loss(self, params, state, io):
    del params, state
    student_out = io.student
    s, t = student_out["embedding"], io.teachers[0]["embedding"]
    teacher_logits = base.teacher_ensemble_logits(io.teachers)
    means = {
        "rkd_distance": jnp.mean(relational.rkd_distance(s, t)),
        "rkd_angle": jnp.mean(relational.rkd_angle(s, t)),
    }
    loss = self.distance_weight * means["rkd_distance"] + self.angle_weight * means["rkd_angle"]
    if self.kd_weight > 0:
      means["kd"] = jnp.mean(
          logit_losses.hinton_kd(
              student_out["logits"], teacher_logits, temperature=self.kd_temperature
          )
      )
      loss = loss + self.kd_weight * means["kd"]
    if self.ce_weight > 0:
      means["ce"] = jnp.mean(logit_losses.cross_entropy(student_out["logits"], io.batch["label"]))
      loss = loss + self.ce_weight * means["ce"]
    return loss, base.Aux(metrics=means)
