"""SP: similarity-preserving knowledge distillation (Tung & Mori, ICCV 2019), a relational baseline
of the method zoo table.

Inputs that the teacher maps to similar activations should be similar for the student too: the
row-normalised batch Gram matrices G = Q Qᵀ of flattened feature maps are matched
(`kd_jax.losses.relational.similarity_preserving`), summed over the chosen map pairs:

    L = w·Σ_(i,j) SP(u_s,i, u_t,j) + w_kd·τ²KL + w_ce·CE.

Shapes may differ but for the batch. Defaults are RepDistiller's CIFAR-100 setting (Tian et al.,
ICLR 2020): w = 3000 on the last stage's map of each network, with CE and without KD.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from kd_jax.losses import relational
from kd_jax.methods import base
from kd_jax.methods.fitnets import feature_pairs, task_terms
from kd_jax.methods.pkt import check_weights, weighted_total


@dataclasses.dataclass(frozen=True)
class SimilarityPreserving(base.Method):
  """Attributes:
  pairs: ((student feature index, teacher feature index), ...); default ((-1, -1),), the last maps.
  weight: of the SP term; kd_weight, kd_temperature, ce_weight: the optional logit terms.
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"logits", "features"})
  batch_dependent: ClassVar[bool] = True  # Gram matrices span the batch
  pairs: tuple = ((-1, -1),)
  weight: float = 3000.0
  kd_weight: float = 0.0
  kd_temperature: float = 4.0
  ce_weight: float = 1.0

  def __post_init__(self):
    object.__setattr__(self, "pairs", tuple(tuple(p) for p in self.pairs))
    if not self.pairs or any(len(p) != 2 for p in self.pairs):
      raise ValueError(f"sp: pairs must be (student index, teacher index) pairs, got {self.pairs}.")
    check_weights(self, "sp")

  def loss(self, params, state, io):
    del params, state
    student, teacher = io.student["features"], io.teachers[0]["features"]
    value = sum(
        jnp.mean(relational.similarity_preserving(student[i], teacher[j]))
        for i, j in feature_pairs(self.pairs, student, teacher, "sp")
    )
    terms = task_terms(self, io)
    return weighted_total(self, value, terms), base.Aux(metrics={"sp": value, **terms})
