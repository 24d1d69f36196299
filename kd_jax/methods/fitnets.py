"""FitNets (Romero et al., ICLR 2015): hint regression of intermediate features, a baseline of
the DiSK table (PAPERS.md §4).

L = w_hint·Σ_(i,j) hint(r_ij(u_s,i), u_t,j) + w_kd·τ²KL(σ(z_t/τ)‖σ(z_s/τ)) + w_ce·CE, where u_s,i is
the student's feature map i, u_t,j the teacher's map j, and r_ij a learned 1×1 convolution from
the student's channels to the teacher's (`kd_jax.losses.fitnets_hint`). With `hint_steps` > 0
training follows the paper's two stages: the first `hint_steps` optimiser steps minimise the hint
term alone (the student's layers up to the guided one and the adapters learn), the rest the
KD + CE objective without it.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.losses import embedding
from kd_jax.losses import logits as logit_losses
from kd_jax.methods import base


def feature_pairs(pairs, student_features, teacher_features, method: str) -> tuple:
  """Explicit (student index, teacher index) pairs, or the middle map of each side (Romero et
  al. guide the student's middle layer with the teacher's); indices checked against both."""
  count_s, count_t = len(student_features), len(teacher_features)
  if not pairs:
    pairs = ((count_s // 2, count_t // 2),)
  out = []
  for i, j in pairs:
    if not (-count_s <= i < count_s and -count_t <= j < count_t):
      raise ValueError(
          f"{method}: feature pair ({i}, {j}) is out of range: the student has "
          f"{count_s} feature maps and the teacher {count_t}."
      )
    out.append((int(i) % count_s, int(j) % count_t))
  return tuple(out)


def task_terms(method, io) -> dict[str, jax.Array]:
  """The KD and CE terms (batch means) a feature method adds when their weights are > 0."""
  terms = {}
  if method.kd_weight > 0:
    terms["kd"] = jnp.mean(
        logit_losses.hinton_kd(
            io.student["logits"],
            base.teacher_ensemble_logits(io.teachers),
            temperature=method.kd_temperature,
        )
    )
  if method.ce_weight > 0:
    terms["ce"] = jnp.mean(logit_losses.cross_entropy(io.student["logits"], io.batch["label"]))
  return terms


@dataclasses.dataclass(frozen=True)
class FitNets(base.Method):
  """Attributes:
  pairs: ((student feature index, teacher feature index), ...); empty: the middle maps.
  hint_weight, kd_weight, ce_weight: term weights; kd_temperature: τ of the KD term.
  hint_steps: > 0 for the two-stage schedule (hint only, then KD + CE).
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"logits", "features"})
  pairs: tuple = ()
  hint_weight: float = 1.0
  kd_weight: float = 0.0
  kd_temperature: float = 4.0
  ce_weight: float = 1.0
  hint_steps: int = 0

  def __post_init__(self):
    object.__setattr__(self, "pairs", tuple(tuple(p) for p in self.pairs))
    if any(len(p) != 2 for p in self.pairs):
      raise ValueError(
          f"fitnets: pairs must be (student index, teacher index) pairs, got " f"{self.pairs}."
      )
    if min(self.hint_weight, self.kd_weight, self.ce_weight) < 0 or self.kd_temperature <= 0:
      raise ValueError("fitnets: weights must be >= 0 and kd_temperature > 0.")
    if self.hint_steps < 0:
      raise ValueError(f"fitnets: hint_steps must be >= 0, got {self.hint_steps}.")

  def init(self, rng, io):
    student, teacher = io.student["features"], io.teachers[0]["features"]
    adapters = {}
    pairs = feature_pairs(self.pairs, student, teacher, "fitnets")
    for (i, j), key in zip(pairs, jax.random.split(rng, len(pairs))):
      c_s, c_t = student[i].shape[-1], teacher[j].shape[-1]
      adapters[f"{i}_{j}"] = {
          "kernel": jax.random.normal(key, (c_s, c_t)) / np.sqrt(c_s),
          "bias": jnp.zeros((c_t,)),
      }
    return base.Variables(params={"adapters": adapters})

  def loss(self, params, state, io):
    del state
    student, teacher = io.student["features"], io.teachers[0]["features"]
    hint = sum(
        jnp.mean(embedding.fitnets_hint(student[i], teacher[j], params["adapters"][f"{i}_{j}"]))
        for i, j in feature_pairs(self.pairs, student, teacher, "fitnets")
    )
    terms = task_terms(self, io)
    task = self.kd_weight * terms.get("kd", 0.0) + self.ce_weight * terms.get("ce", 0.0)
    if self.hint_steps:
      in_hint_stage = io.step < self.hint_steps
      loss = jnp.where(in_hint_stage, self.hint_weight * hint, task)
    else:
      loss = self.hint_weight * hint + task
    return loss, base.Aux(metrics={"hint": hint, **terms})
