"""VID: variational information distillation (Ahn, Hu, Damianou, Lawrence, Dai; CVPR 2019), a
feature baseline of the method zoo table.

VID maximises a variational lower bound on the mutual information between teacher and student
maps: the teacher's map t is modelled as a Gaussian whose mean μ(s) is regressed from the student's
map s and whose variance σ²_c is learned per channel, σ²_c = softplus(α_c) + ε. The loss is the
negative log-likelihood (`kd_jax.losses.feature_maps.vid_nll`), summed over map pairs:

    L = w·Σ_(i,j) mean ½(log σ²_c + (t − μ(s))²/σ²_c) + w_kd·τ²KL + w_ce·CE.

μ is three 1×1 convolutions (student channels → m → m → teacher channels, ReLU between, no bias)
and α starts where σ² = 5, both trained with the student (method params). Defaults are the
paper's CIFAR code as RepDistiller runs it (Tian et al., ICLR 2020): every stage's output map,
m = the teacher's channels, w = 1, ε = 1e-5, initial σ² = 5, with CE and without KD.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from kd_jax.losses import feature_maps
from kd_jax.methods import base
from kd_jax.methods.fitnets import task_terms
from kd_jax.methods.nst import stage_pairs
from kd_jax.methods.pkt import check_weights, weighted_total


class MeanRegressor(nn.Module):
  """μ(s): 1×1 conv → ReLU → 1×1 conv → ReLU → 1×1 conv on [batch, h, w, c_s], no biases."""

  mid_channels: int
  out_channels: int

  @nn.compact
  def __call__(self, x):
    conv = lambda width: nn.Dense(
        width, use_bias=False, kernel_init=nn.initializers.variance_scaling(2.0, "fan_in", "normal")
    )
    x = nn.relu(conv(self.mid_channels)(x))
    x = nn.relu(conv(self.mid_channels)(x))
    return conv(self.out_channels)(x)


@dataclasses.dataclass(frozen=True)
class VID(base.Method):
  """Attributes:
  pairs: ((student feature index, teacher feature index), ...); empty: stage k with stage k.
  weight: of the VID term; mid_channels: m (0: the teacher map's channels).
  initial_variance: σ² at the start; eps: ε, the variance floor.
  kd_weight, kd_temperature, ce_weight: the optional logit terms.
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"logits", "features"})
  pairs: tuple = ()
  weight: float = 1.0
  mid_channels: int = 0
  initial_variance: float = 5.0
  eps: float = 1e-5
  kd_weight: float = 0.0
  kd_temperature: float = 4.0
  ce_weight: float = 1.0

  def __post_init__(self):
    object.__setattr__(self, "pairs", tuple(tuple(p) for p in self.pairs))
    check_weights(self, "vid")
    if self.mid_channels < 0:
      raise ValueError(f"vid: mid_channels must be >= 0, got {self.mid_channels}.")
    feature_maps.vid_raw_variance(self.initial_variance, self.eps)  # raises if σ² ≤ ε

  def _pairs(self, io):
    student, teacher = io.student["features"], io.teachers[0]["features"]
    pairs = stage_pairs(self.pairs, student, teacher, "vid")
    for i, j in pairs:
      if student[i].shape[:3] != teacher[j].shape[:3]:
        raise ValueError(
            f"vid: student map {i} has shape {tuple(student[i].shape)} and teacher map {j} "
            f"{tuple(teacher[j].shape)}: pair maps of the same spatial size."
        )
    return student, teacher, pairs

  def _regressor(self, teacher_channels: int) -> MeanRegressor:
    return MeanRegressor(self.mid_channels or teacher_channels, teacher_channels)

  def init(self, rng, io):
    student, teacher, pairs = self._pairs(io)
    params = {}
    for (i, j), key in zip(pairs, jax.random.split(rng, len(pairs))):
      channels = teacher[j].shape[-1]
      params[f"{i}_{j}"] = {
          "regressor": self._regressor(channels).init(key, student[i])["params"],
          "raw_variance": jnp.full(
              (channels,), feature_maps.vid_raw_variance(self.initial_variance, self.eps)
          ),
      }
    return base.Variables(params=params)

  def loss(self, params, state, io):
    del state
    student, teacher, pairs = self._pairs(io)
    value = 0.0
    for i, j in pairs:
      part = params[f"{i}_{j}"]
      mean = self._regressor(teacher[j].shape[-1]).apply({"params": part["regressor"]}, student[i])
      value += jnp.mean(feature_maps.vid_nll(mean, teacher[j], part["raw_variance"], eps=self.eps))
    terms = task_terms(self, io)
    return weighted_total(self, value, terms), base.Aux(metrics={"vid": value, **terms})
