"""OFD: a comprehensive overhaul of feature distillation (Heo, Kim, Yun, Park, Kwak, Choi; ICCV
2019), a feature baseline of the method zoo table.

The student distils the teacher's maps *before* the ReLU, where negative responses still carry
information, but only as much of them as matters: the target is raised to a per-channel margin
m = E[x | x < 0] computed from the teacher's BatchNorm that produced the map (`ofd_margin`), and
the partial L2 skips elements where both the student and the target are at or below zero's side
(`ofd_partial_l2`). The student's pre-ReLU map goes through a connector — 1×1 convolution to the
teacher's channels + BatchNorm, trained with the student (its statistics are the method's model
state) — and later stages count more:

    L = w·Σ_k 2^{−(n−1−k)}·d_p(C_k(s_k), max(t_k, m_k)) + w_kd·τ²KL + w_ce·CE,

d_p summed over positions and channels, averaged over the batch. The models return the pre-ReLU
maps and their BatchNorm parameters on request ("preact_features", "preact_bn";
`kd_jax.models.resnet`, `preact`). Defaults are the paper's CIFAR-100 code (and mdistiller's):
every stage, w = 1e-3, CE weight 1, no KD.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from kd_jax.losses import feature_maps
from kd_jax.methods import base
from kd_jax.methods.fitnets import task_terms
from kd_jax.methods.nst import stage_pairs
from kd_jax.methods.pkt import check_weights, weighted_total


def require_output(outputs, name: str, side: str, method: str) -> None:
  """One clear line when a model does not return an output the method reads."""
  if outputs.get(name) is None:
    raise ValueError(
        f"{method}: the {side} returns no {name!r} (it returns {sorted(outputs)}); use a model "
        "that can (kd_jax.models ResNet / PreActResNet / WRN)."
    )


class Connectors(nn.Module):
  """One 1×1 convolution (no bias) + BatchNorm per distilled map, to the teacher's channels."""

  out_channels: tuple

  @nn.compact
  def __call__(self, maps, *, train: bool):
    out = []
    for index, (x, width) in enumerate(zip(maps, self.out_channels)):
      # He initialisation in fan-out mode over a 1×1 kernel, as the paper's code.
      x = nn.Dense(
          width,
          use_bias=False,
          kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
          name=f"conv{index}",
      )(x)
      out.append(
          nn.BatchNorm(
              use_running_average=not train, momentum=0.9, epsilon=1e-5, name=f"bn{index}"
          )(x)
      )
    return out


@dataclasses.dataclass(frozen=True)
class OFD(base.Method):
  """Attributes:
  pairs: ((student index, teacher index), ...) into "preact_features"; empty: stage k with k.
  weight: of the distillation term (1e-3); kd_weight, kd_temperature, ce_weight: logit terms.
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"logits", "preact_features"})
  teacher_outputs: ClassVar[frozenset] = frozenset({"logits", "preact_features", "preact_bn"})
  pairs: tuple = ()
  weight: float = 1e-3
  kd_weight: float = 0.0
  kd_temperature: float = 4.0
  ce_weight: float = 1.0

  def __post_init__(self):
    object.__setattr__(self, "pairs", tuple(tuple(p) for p in self.pairs))
    check_weights(self, "ofd")

  def _pairs(self, io):
    require_output(io.student, "preact_features", "student", "ofd")
    for name in ("preact_features", "preact_bn"):
      require_output(io.teachers[0], name, "teacher", "ofd")
    student, teacher = io.student["preact_features"], io.teachers[0]["preact_features"]
    return student, teacher, stage_pairs(self.pairs, student, teacher, "ofd")

  def _connectors(self, io):
    student, teacher, pairs = self._pairs(io)
    module = Connectors(tuple(teacher[j].shape[-1] for _, j in pairs))
    return module, [student[i] for i, _ in pairs], pairs

  def init(self, rng, io):
    module, maps, _ = self._connectors(io)
    variables = module.init(rng, maps, train=False)
    return base.Variables(
        params={"connectors": variables["params"]},
        model_state={"batch_stats": variables["batch_stats"]},
    )

  def loss(self, params, state, io):
    del state
    module, maps, pairs = self._connectors(io)
    variables = {"params": params["connectors"], **io.model_state}
    if io.train:
      connected, new_model_state = module.apply(
          variables, maps, train=True, mutable=["batch_stats"]
      )
    else:
      connected, new_model_state = module.apply(variables, maps, train=False), {}
    teacher = io.teachers[0]
    value = 0.0
    for k, ((_, j), student_map) in enumerate(zip(pairs, connected)):
      bn = teacher["preact_bn"][j]  # repeated over the batch: every row is the same
      margin = feature_maps.ofd_margin(bn["scale"][0], bn["bias"][0])
      distance = feature_maps.ofd_partial_l2(student_map, teacher["preact_features"][j], margin)
      value += jnp.mean(distance) / 2.0 ** (len(pairs) - 1 - k)
    terms = task_terms(self, io)
    return weighted_total(self, value, terms), base.Aux(
        metrics={"ofd": value, **terms}, model_state=dict(new_model_state)
    )
