"""NST: neuron selectivity transfer (Huang & Wang, 2017, "Like What You Like"), a feature baseline
of the method zoo table.

Each channel's spatial activation pattern is a sample; the student's set of patterns should have
the teacher's distribution, measured by the squared MMD with the polynomial kernel
k(x, y) = (xᵀy + c)^d (`kd_jax.losses.feature_maps.nst_mmd`), summed over map pairs of equal
spatial size:

    L = w·Σ_(i,j) MMD²(u_s,i, u_t,j) + w_kd·τ²KL + w_ce·CE.

Defaults are the paper's kernel (d = 2, c = 0) and RepDistiller's CIFAR-100 setting (Tian et al.,
ICLR 2020): w = 50 on every stage's output map, with CE and without KD.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from kd_jax.losses import feature_maps
from kd_jax.methods import base
from kd_jax.methods.fitnets import feature_pairs, task_terms
from kd_jax.methods.pkt import check_weights, weighted_total


def stage_pairs(pairs, student, teacher, method: str) -> tuple:
  """Explicit pairs (checked against both sides), or stage k with stage k for every stage."""
  if not pairs:
    if len(student) != len(teacher):
      raise ValueError(
          f"{method}: the student has {len(student)} feature maps and the teacher "
          f"{len(teacher)}; give `pairs` explicitly."
      )
    pairs = tuple((k, k) for k in range(len(student)))
  return feature_pairs(pairs, student, teacher, method)


@dataclasses.dataclass(frozen=True)
class NST(base.Method):
  """Attributes:
  pairs: ((student feature index, teacher feature index), ...); empty: stage k with stage k.
  weight: of the MMD term; degree, offset: d and c of the polynomial kernel.
  kd_weight, kd_temperature, ce_weight: the optional logit terms.
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"logits", "features"})
  pairs: tuple = ()
  weight: float = 50.0
  degree: int = 2
  offset: float = 0.0
  kd_weight: float = 0.0
  kd_temperature: float = 4.0
  ce_weight: float = 1.0

  def __post_init__(self):
    object.__setattr__(self, "pairs", tuple(tuple(p) for p in self.pairs))
    check_weights(self, "nst")
    if self.degree < 1:
      raise ValueError(f"nst: degree must be >= 1, got {self.degree}.")

  def loss(self, params, state, io):
    del params, state
    student, teacher = io.student["features"], io.teachers[0]["features"]
    value = sum(
        jnp.mean(
            feature_maps.nst_mmd(student[i], teacher[j], degree=self.degree, offset=self.offset)
        )
        for i, j in stage_pairs(self.pairs, student, teacher, "nst")
    )
    terms = task_terms(self, io)
    return weighted_total(self, value, terms), base.Aux(metrics={"nst": value, **terms})
