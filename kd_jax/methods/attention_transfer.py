"""AT: attention transfer (Zagoruyko & Komodakis, ICLR 2017), a baseline of the DiSK table.

L = β·Σ_(i,j) AT(u_s,i, u_t,j) + w_kd·τ²KL + w_ce·CE, with AT the mean squared difference of the
normalised spatial attention maps q = vec(Σ_c |A_c|^p)/‖·‖₂ of student map i and teacher map j
(`kd_jax.losses.attention_transfer`; the maps must have the same spatial size, channels may
differ). β = 1000 as in the paper's code.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from kd_jax.losses import embedding
from kd_jax.methods import base
from kd_jax.methods.fitnets import task_terms


@dataclasses.dataclass(frozen=True)
class AttentionTransfer(base.Method):
  """Attributes:
  pairs: ((student feature index, teacher feature index), ...); empty: stage k with stage k
    for every stage (student and teacher need the same number of maps).
  weight: β; p: the exponent of the attention map; kd_weight, kd_temperature, ce_weight.
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"logits", "features"})
  pairs: tuple = ()
  weight: float = 1000.0
  p: float = 2.0
  kd_weight: float = 0.0
  kd_temperature: float = 4.0
  ce_weight: float = 1.0

  def __post_init__(self):
    object.__setattr__(self, "pairs", tuple(tuple(p) for p in self.pairs))
    if (
        min(self.weight, self.kd_weight, self.ce_weight) < 0
        or self.p <= 0
        or self.kd_temperature <= 0
    ):
      raise ValueError("at: weights must be >= 0, p and kd_temperature > 0.")

  def _pairs(self, student, teacher):
    if self.pairs:
      return self.pairs
    if len(student) != len(teacher):
      raise ValueError(
          f"at: the student has {len(student)} feature maps and the teacher "
          f"{len(teacher)}; give `pairs` explicitly."
      )
    return tuple((k, k) for k in range(len(student)))

  def loss(self, params, state, io):
    del params, state
    student, teacher = io.student["features"], io.teachers[0]["features"]
    at = sum(
        jnp.mean(embedding.attention_transfer(student[i], teacher[j], p=self.p))
        for i, j in self._pairs(student, teacher)
    )
    terms = task_terms(self, io)
    loss = (
        self.weight * at
        + self.kd_weight * terms.get("kd", 0.0)
        + self.ce_weight * terms.get("ce", 0.0)
    )
    return loss, base.Aux(metrics={"at": at, **terms})
