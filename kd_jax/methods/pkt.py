"""PKT: probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018), a relational baseline of
the method zoo table.

The student's pooled embeddings keep the teacher's neighbour probabilities under a cosine kernel,
p_ij = K(x_i, x_j)/Σ_k K(x_i, x_k) with K = (cos + 1)/2, through their KL divergence
(`kd_jax.losses.relational.pkt`):

    L = w·PKT(s, t) + w_kd·τ²KL + w_ce·CE.

Defaults are RepDistiller's CIFAR-100 setting (Tian et al., ICLR 2020, whose Table 1 reports PKT):
w = 30 000 on the penultimate (pooled) embedding, with CE and without KD.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from kd_jax.losses import relational
from kd_jax.methods import base
from kd_jax.methods.fitnets import task_terms


def check_weights(method, name: str) -> None:
  """Every *_weight field ≥ 0 and kd_temperature > 0, with one line naming the method."""
  weights = {f.name: getattr(method, f.name) for f in dataclasses.fields(method)}
  negative = sorted(k for k, v in weights.items() if k.endswith("weight") and v < 0)
  if negative:
    raise ValueError(f"{name}: {', '.join(negative)} must be >= 0.")
  if getattr(method, "kd_temperature", 1.0) <= 0:
    raise ValueError(f"{name}: kd_temperature must be > 0, got {method.kd_temperature}.")


def weighted_total(method, distill, terms) -> jnp.ndarray:
  """w·distill + w_kd·KD + w_ce·CE (the terms present in `terms`)."""
  return (
      method.weight * distill
      + method.kd_weight * terms.get("kd", 0.0)
      + method.ce_weight * terms.get("ce", 0.0)
  )


@dataclasses.dataclass(frozen=True)
class PKT(base.Method):
  """Attributes:
  weight: of the PKT term; eps: ε inside the KL's logarithm.
  kd_weight, kd_temperature, ce_weight: the optional logit terms.
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"logits", "embedding"})
  batch_dependent: ClassVar[bool] = True  # neighbour probabilities span the batch
  weight: float = 30_000.0
  eps: float = 1e-7
  kd_weight: float = 0.0
  kd_temperature: float = 4.0
  ce_weight: float = 1.0

  def __post_init__(self):
    check_weights(self, "pkt")

  def loss(self, params, state, io):
    del params, state
    value = jnp.mean(
        relational.pkt(io.student["embedding"], io.teachers[0]["embedding"], eps=self.eps)
    )
    terms = task_terms(self, io)
    return weighted_total(self, value, terms), base.Aux(metrics={"pkt": value, **terms})
