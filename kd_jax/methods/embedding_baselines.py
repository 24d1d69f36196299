"""The embedding baselines of the CompRess tables (PAPERS.md §5 and "Baselines"): Reg, Reg-BN, CC.

All three distil the teacher's pooled embedding t ∈ R^{d_t} into the student's s ∈ R^{d_s} (the
"embedding" output; for a BERT sentence encoder the mean-pooled last layer), optionally with the
KD and CE terms of the logits (weights 0 by default: the CompRess setting has no labels):

  Reg     L_i = (1/d_t) Σ_k (W s_i + b − t_i)_k²  — MSE regression through a learned linear map
          (a method param; CompRess's modified FitNets on the final embedding).
  Reg-BN  L_i = (1/d_t) Σ_k (BN(W s + b)_ik − BN(t)_ik)², BN(x)_ik = (x_ik − μ_k)/√(σ²_k + ε)
          with the batch's mean μ and biased variance σ² per dimension and no affine part.
          Decision: BatchNorm on *both* sides, as PAPERS.md describes CompRess's Reg-BN ("we add
          a BN layer without affine on both"), not on the target alone: normalising only t would
          leave the regressor free to match a per-dimension scale the target no longer has, and
          the bias of W is cancelled either way. Batch statistics are used in every step (the
          loss is never evaluated at inference, so no running averages are kept), which couples
          the examples of a batch: the method is batch-dependent.
  CC      correlation congruence (Peng et al., ICCV 2019): batch correlation matrices of the
          L2-normalised embeddings under a Gaussian RBF kernel (2nd-order Taylor, γ = 0.4),
          L_i = (1/n) Σ_j (C^T_ij − C^S_ij)² (`kd_jax.losses.correlation_congruence`); the widths
          may differ, so no map is learned. Batch-dependent.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.losses import checks
from kd_jax.losses import embedding as embedding_losses
from kd_jax.losses import relational
from kd_jax.methods import base
from kd_jax.methods import fitnets


def batch_normalized_mse(prediction, target, *, epsilon: float = 1e-5):
  """Reg-BN's loss per example: (1/d) Σ_k (BN(prediction)_ik − BN(target)_ik)².

  BN(x)_ik = (x_ik − μ_k) / √(σ²_k + ε) over the batch axis (biased variance, no affine: PyTorch's
  `BatchNorm1d(affine=False)` in train mode, ε = 1e-5).

  Args:
    prediction: [batch, d] (the regressed student embedding); target: [batch, d].
  Returns:
    [batch] float32.
  """
  checks.require_rank("prediction", prediction, 2)
  checks.require_same_shape("prediction", prediction, "target", target)
  if jnp.shape(prediction)[0] < 2:
    raise ValueError(
        f"batch normalisation needs at least 2 examples, got shape {tuple(jnp.shape(prediction))}."
    )
  prediction, target = checks.as_float32(prediction, target)

  def normalize(x):
    mean = jnp.mean(x, axis=0, keepdims=True)
    variance = jnp.mean(jnp.square(x - mean), axis=0, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(variance + epsilon)

  return jnp.mean(jnp.square(normalize(prediction) - normalize(target)), axis=-1)


@dataclasses.dataclass(frozen=True)
class _EmbeddingBaseline(base.Method):
  """Shared fields: the term's weight, optional KD / CE terms, the teacher to distil."""

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"embedding"})
  name: ClassVar[str] = "embedding baseline"
  weight: float = 1.0
  kd_weight: float = 0.0
  kd_temperature: float = 4.0
  ce_weight: float = 0.0
  teacher: int = 0

  def __post_init__(self):
    if min(self.weight, self.kd_weight, self.ce_weight) < 0 or self.kd_temperature <= 0:
      raise ValueError(f"{self.name}: weights must be >= 0 and kd_temperature > 0.")

  def embeddings(self, io):
    """(s [b, d_s], t [b, d_t]) in float32."""
    if not 0 <= self.teacher < len(io.teachers):
      raise ValueError(
          f"{self.name}: teacher={self.teacher} but the run has {len(io.teachers)} teacher(s)."
      )
    return (
        io.student["embedding"].astype(jnp.float32),
        io.teachers[self.teacher]["embedding"].astype(jnp.float32),
    )

  def term(self, params, s, t):
    """The baseline's per-example loss [batch]."""
    raise NotImplementedError

  def loss(self, params, state, io):
    del state
    s, t = self.embeddings(io)
    value = jnp.mean(self.term(params, s, t))
    terms = fitnets.task_terms(self, io)
    loss = self.weight * value
    loss += self.kd_weight * terms.get("kd", 0.0) + self.ce_weight * terms.get("ce", 0.0)
    return loss, base.Aux(metrics={self.name: value, **terms})


def _linear_map(rng, io, teacher: int):
  """{"kernel": [d_s, d_t], "bias": [d_t]}: PyTorch's nn.Linear scale, zero bias."""
  d_s = io.student["embedding"].shape[-1]
  d_t = io.teachers[teacher]["embedding"].shape[-1]
  return {"kernel": jax.random.normal(rng, (d_s, d_t)) / np.sqrt(d_s), "bias": jnp.zeros((d_t,))}


@dataclasses.dataclass(frozen=True)
class Regression(_EmbeddingBaseline):
  """Reg: MSE between W s + b and the teacher embedding t. Attributes: weight, kd_weight,
  kd_temperature, ce_weight, teacher (see `_EmbeddingBaseline`)."""

  name: ClassVar[str] = "reg"

  def init(self, rng, io):
    self.embeddings(io)  # checks the teacher index
    return base.Variables(params={"map": _linear_map(rng, io, self.teacher)})

  def term(self, params, s, t):
    return embedding_losses.embedding_mse(embedding_losses.apply_adapter(s, params["map"]), t)


@dataclasses.dataclass(frozen=True)
class RegressionBN(Regression):
  """Reg-BN: the MSE between batch-normalised W s + b and batch-normalised t (no affine).

  Attributes: epsilon (BatchNorm's ε), and those of `Regression`.
  """

  name: ClassVar[str] = "reg_bn"
  batch_dependent: ClassVar[bool] = True
  epsilon: float = 1e-5

  def term(self, params, s, t):
    prediction = embedding_losses.apply_adapter(s, params["map"])
    return batch_normalized_mse(prediction, t, epsilon=self.epsilon)


@dataclasses.dataclass(frozen=True)
class CorrelationCongruence(_EmbeddingBaseline):
  """CC on the embeddings. Attributes: kernel ("gaussian_taylor", "gaussian", "bilinear"),
  gamma (γ), order (P of the Taylor expansion), and the shared weights."""

  name: ClassVar[str] = "cc"
  batch_dependent: ClassVar[bool] = True
  kernel: str = "gaussian_taylor"
  gamma: float = 0.4
  order: int = 2

  def term(self, params, s, t):
    del params
    return relational.correlation_congruence(
        s, t, kernel=self.kernel, gamma=self.gamma, order=self.order
    )
