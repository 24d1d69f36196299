"""ReviewKD: distilling knowledge via knowledge review (Chen, Liu, Zhao, Jia; CVPR 2021), a feature
baseline of the method zoo table.

Knowledge review: a student stage learns from the teacher's same stage *and* reviews it with its
own deeper stages. The student's maps (every stage, and the pooled embedding as a 1×1 map) are
fused from the deepest to the shallowest by attention-based fusion (ABF): a 1×1 conv + BN to m
channels, then, below the deepest level, two per-pixel gates σ(conv1×1([x, up(r)])) mixing x with
the upsampled fused map r of the level below, then a 3×3 conv + BN to the teacher's channels at
the teacher's size. Each fused map is compared with the teacher's map of that level by the
hierarchical context loss (`kd_jax.losses.feature_maps.hcl`: MSE at full size and pooled to 4×4,
2×2, 1×1):

    L = w_ce·CE + w·min(epoch / E_w, 1)·Σ_levels HCL(ABF(s)_l, t_l).

The teacher's stage maps are taken before their last ReLU ("preact_features"), the student's
after it, as in the paper's code; `teacher_preact=False` uses the teacher's "features" for models
without pre-ReLU outputs. Defaults are the official CIFAR-100 code: w = 1 (its default; its
scripts use 0.6 for resnet56 → resnet20 and 5 for resnet32x4 → resnet8x4), E_w = 20 of 240
epochs, m = min(512, the student's embedding width), CE weight 1.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from kd_jax.losses import feature_maps
from kd_jax.losses import logits as logit_losses
from kd_jax.methods import base
from kd_jax.methods.dkd import warmup_factor
from kd_jax.methods.ofd import require_output


def resize_nearest(x, size):
  """[batch, h, w, c] → [batch, size[0], size[1], c], nearest neighbour (no-op when equal)."""
  if tuple(x.shape[1:3]) == tuple(size):
    return x
  return jax.image.resize(x, (x.shape[0], *size, x.shape[-1]), "nearest")


class ReviewFusion(nn.Module):
  """ABF at every level, deepest first; returns the fused maps in the input (shallow → deep) order.

  out_channels, out_sizes: the teacher's channels and (h, w) at each level.
  """

  mid_channels: int
  out_channels: tuple
  out_sizes: tuple

  @nn.compact
  def __call__(self, maps, *, train: bool):
    norm = lambda name: nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name
    )
    # kaiming_uniform_(a=1) of the paper's code: gain 1, uniform on ±√(3/fan_in).
    init = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
    results, residual = [None] * len(maps), None
    for level in reversed(range(len(maps))):
      x = nn.Conv(self.mid_channels, (1, 1), use_bias=False, kernel_init=init, name=f"in{level}")(
          maps[level]
      )
      x = norm(f"in_bn{level}")(x)
      if residual is not None:
        residual = resize_nearest(residual, x.shape[1:3])
        gates = nn.sigmoid(
            nn.Conv(2, (1, 1), name=f"gate{level}")(jnp.concatenate([x, residual], -1))
        )
        x = x * gates[..., :1] + residual * gates[..., 1:]
      x = resize_nearest(x, self.out_sizes[level])
      y = nn.Conv(
          self.out_channels[level],
          (3, 3),
          padding=1,
          use_bias=False,
          kernel_init=init,
          name=f"out{level}",
      )(x)
      results[level] = norm(f"out_bn{level}")(y)
      residual = x
    return results


@dataclasses.dataclass(frozen=True)
class ReviewKD(base.Method):
  """Attributes:
  weight: w of the review loss; warmup_epochs: E_w of its linear ramp (scale it with the run).
  mid_channels: m (0: min(512, the student's embedding width)).
  teacher_preact: distil the teacher's pre-ReLU stage maps (the paper's code) or its "features".
  ce_weight: of the hard-label cross-entropy.
  """

  uses_teacher: ClassVar[bool] = True
  outputs: ClassVar[frozenset] = frozenset({"logits", "features", "embedding"})
  weight: float = 1.0
  warmup_epochs: float = 20.0
  mid_channels: int = 0
  teacher_preact: bool = True
  ce_weight: float = 1.0

  def __post_init__(self):
    if min(self.weight, self.warmup_epochs, self.ce_weight, self.mid_channels) < 0:
      raise ValueError("reviewkd: weight, warmup_epochs, ce_weight, mid_channels must be >= 0.")

  def requested_outputs(self):
    stages = "preact_features" if self.teacher_preact else "features"
    return self.outputs, frozenset({"logits", "embedding", stages})

  def _levels(self, io):
    """(student maps, teacher maps): stage maps then the embedding as a 1×1 map, on each side."""
    stages = "preact_features" if self.teacher_preact else "features"
    require_output(io.teachers[0], stages, "teacher", "reviewkd")
    as_map = lambda e: e[:, None, None, :]
    student = [*io.student["features"], as_map(io.student["embedding"])]
    teacher = [*io.teachers[0][stages], as_map(io.teachers[0]["embedding"])]
    if len(student) != len(teacher):
      raise ValueError(
          f"reviewkd: the student has {len(student) - 1} stage maps and the teacher "
          f"{len(teacher) - 1}; ReviewKD pairs them stage by stage."
      )
    return student, teacher

  def _module(self, student, teacher) -> ReviewFusion:
    return ReviewFusion(
        mid_channels=self.mid_channels or min(512, student[-1].shape[-1]),
        out_channels=tuple(t.shape[-1] for t in teacher),
        out_sizes=tuple(tuple(t.shape[1:3]) for t in teacher),
    )

  def init(self, rng, io):
    student, teacher = self._levels(io)
    variables = self._module(student, teacher).init(rng, student, train=False)
    return base.Variables(
        params={"fusion": variables["params"]},
        model_state={"batch_stats": variables["batch_stats"]},
    )

  def loss(self, params, state, io):
    del state
    student, teacher = self._levels(io)
    module = self._module(student, teacher)
    variables = {"params": params["fusion"], **io.model_state}
    if io.train:
      fused, new_model_state = module.apply(variables, student, train=True, mutable=["batch_stats"])
    else:
      fused, new_model_state = module.apply(variables, student, train=False), {}
    review = sum(jnp.mean(feature_maps.hcl(s, t)) for s, t in zip(fused, teacher))
    metrics = {
        "review": review,
        "ce": jnp.mean(logit_losses.cross_entropy(io.student["logits"], io.batch["label"])),
        "review_warmup": warmup_factor(io.step, io.context, self.warmup_epochs),
    }
    loss = self.ce_weight * metrics["ce"] + self.weight * metrics["review_warmup"] * review
    return loss, base.Aux(metrics=metrics, model_state=dict(new_model_state))
