"""Pre-activation ResNets: Wide ResNets (WRN-depth-width) and the PreAct ResNets of Stanton et al.

Pre-activation block (He et al., "Identity Mappings in Deep Residual Networks", 2016):
`y = conv(relu(BN(conv_s(relu(BN(x)))))) + shortcut`, no activation after the addition; the
network ends with BN-ReLU before pooling.

* **WRN-d-k** (Zagoruyko & Komodakis, BMVC 2016), as in RepDistiller's `wrn.py`: a 3×3 stem of 16
  channels, three stages of (d − 4)/6 blocks with 16k, 32k, 64k channels, optional dropout
  between the two convolutions. When a block changes shape, its 1×1 shortcut convolution reads
  the *activated* input `relu(BN(x))`. wrn_40_2 ≈ 2.26 M, wrn_16_2 ≈ 0.70 M for 100 classes.
* **PreAct ResNet-d** (Stanton et al., NeurIPS 2021, PAPERS.md §6, gnosis `preresnet.py`, itself
  from bearpaw's pytorch-classification): stem of 16 channels, stages of 16/32/64 channels; basic
  blocks with (d − 2)/6 per stage for d < 44, bottleneck blocks (4× expansion) with (d − 2)/9 per
  stage for d ≥ 44. Its 1×1 shortcut reads the *raw* input x and has no BN.

Global mean pooling, so any input size and channel count works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from kd_jax.models.outputs import requested, select
from kd_jax.models.resnet import (
    batch_norm,
    batch_repeated,
    check_image_batch,
    classifier_logits,
    conv_init,
)


def _conv(width: int, kernel: int, stride: int, dtype: Any, name: str) -> nn.Conv:
  return nn.Conv(
      width,
      (kernel, kernel),
      (stride, stride),
      padding=kernel // 2,
      use_bias=False,
      kernel_init=conv_init,
      dtype=dtype,
      name=name,
  )


class PreActBlock(nn.Module):
  """Pre-activation basic (two 3×3) or bottleneck (1×1, 3×3, 1×1 ×4) block.

  `shortcut_reads_activation` selects WRN's convention (shortcut conv on relu(BN(x))) versus
  bearpaw/gnosis' (shortcut conv on x); both are published and change trained weights, not
  parameter counts.
  """

  width: int
  stride: int = 1
  bottleneck: bool = False
  shortcut_reads_activation: bool = False
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool, return_preact: bool = False):
    """The block's output; with `return_preact`, (that, bn1(x), bn1's params): bn1(x) is the map
    right before a ReLU that ends the previous stage (OFD's pre-ReLU feature)."""
    out_width = self.width * (4 if self.bottleneck else 1)
    first_bn = batch_norm(train, self.dtype, "bn1")
    normalized = first_bn(x)
    activated = nn.relu(normalized)
    if self.bottleneck:
      y = _conv(self.width, 1, 1, self.dtype, "conv1")(activated)
      y = nn.relu(batch_norm(train, self.dtype, "bn2")(y))
      y = _conv(self.width, 3, self.stride, self.dtype, "conv2")(y)
      y = nn.relu(batch_norm(train, self.dtype, "bn3")(y))
      y = _conv(out_width, 1, 1, self.dtype, "conv3")(y)
    else:
      y = _conv(self.width, 3, self.stride, self.dtype, "conv1")(activated)
      y = nn.relu(batch_norm(train, self.dtype, "bn2")(y))
      if self.dropout_rate > 0:
        y = nn.Dropout(self.dropout_rate, deterministic=not train)(y)
      y = _conv(self.width, 3, 1, self.dtype, "conv2")(y)
    shortcut = x
    if self.stride != 1 or x.shape[-1] != out_width:
      source = activated if self.shortcut_reads_activation else x
      shortcut = _conv(out_width, 1, self.stride, self.dtype, "shortcut_conv")(source)
    if return_preact:
      return y + shortcut, normalized, first_bn.variables["params"]
    return y + shortcut


class PreActResNet(nn.Module):
  """Stem conv, three (or more) pre-activation stages, BN-ReLU, global mean pool, classifier.

  Returns a dict: "logits" (float32, None without a head), "embedding" (pooled, post BN-ReLU),
  "features" (each stage's output map, before the final BN-ReLU), "preact_features" (each stage's
  map as it enters the next ReLU: BN(features[k]) of the next stage's first block, the final BN
  for the last stage — OFD's pre-ReLU position for pre-activation nets) and "preact_bn" (that
  BatchNorm's {"scale", "bias"} [batch, c], repeated over the batch).
  """

  stem_width: int
  stage_widths: Sequence[int]
  blocks_per_stage: int
  bottleneck: bool = False
  shortcut_reads_activation: bool = False
  dropout_rate: float = 0.0
  num_classes: int | None = 100
  dtype: Any = jnp.float32

  OUTPUTS = ("logits", "embedding", "features", "preact_features", "preact_bn")

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool, outputs=None) -> dict[str, Any]:
    """Returns "logits", "embedding", "features" (each stage's map): all with `outputs=None`,
    only the named ones otherwise (`kd_jax.models.outputs`)."""
    wanted = requested(outputs, self.OUTPUTS, type(self).__name__)
    check_image_batch(x, type(self).__name__)
    x = _conv(self.stem_width, 3, 1, self.dtype, "stem_conv")(jnp.asarray(x, self.dtype))
    want_preact = bool({"preact_features", "preact_bn"} & wanted)
    features, preact_features, preact_bn = [], [], []
    for stage, width in enumerate(self.stage_widths):
      for index in range(self.blocks_per_stage):
        stride = 2 if (stage > 0 and index == 0) else 1
        block = PreActBlock(
            width,
            stride,
            bottleneck=self.bottleneck,
            shortcut_reads_activation=self.shortcut_reads_activation,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
            name=f"stage{stage + 1}_block{index + 1}",
        )
        if want_preact and stage > 0 and index == 0:  # BN(previous stage's output), pre-ReLU
          x, preact, bn_params = block(x, train=train, return_preact=True)
          preact_features.append(preact)
          preact_bn.append(batch_repeated(bn_params, x.shape[0]))
        else:
          x = block(x, train=train)
      features.append(x)
    final_bn = batch_norm(train, self.dtype, "final_bn")
    x = final_bn(x)
    if want_preact:
      preact_features.append(x)
      preact_bn.append(batch_repeated(final_bn.variables["params"], x.shape[0]))
    x = nn.relu(x)
    embedding = jnp.mean(x, axis=(1, 2))
    logits = classifier_logits(embedding, self.num_classes, self.dtype)
    full = {"logits": logits, "embedding": embedding, "features": features}
    if want_preact:
      full.update(preact_features=preact_features, preact_bn=preact_bn)
    return select(full, wanted)


def wide_resnet(depth: int, width: int, dropout_rate: float = 0.0, **kwargs) -> PreActResNet:
  """WRN-depth-width: (depth − 4)/6 blocks per stage, channels 16k/32k/64k."""
  if depth < 10 or (depth - 4) % 6:
    raise ValueError(f"WRN depth must be 6n + 4 with n >= 1, got {depth}")
  if width < 1:
    raise ValueError(f"WRN width factor must be >= 1, got {width}")
  return PreActResNet(
      stem_width=16,
      stage_widths=(16 * width, 32 * width, 64 * width),
      blocks_per_stage=(depth - 4) // 6,
      shortcut_reads_activation=True,
      dropout_rate=dropout_rate,
      **kwargs,
  )


def preact_resnet(depth: int, widths: Sequence[int] = (16, 32, 64), **kwargs) -> PreActResNet:
  """Stanton et al.'s PreResNet-depth: basic blocks below depth 44, bottlenecks from 44 on."""
  bottleneck = depth >= 44
  divisor = 9 if bottleneck else 6
  if depth < 8 or (depth - 2) % divisor:
    raise ValueError(
        f"PreAct ResNet depth must be {divisor}n + 2 ({'bottleneck' if bottleneck else 'basic'}"
        f" blocks), got {depth}"
    )
  return PreActResNet(
      stem_width=16,
      stage_widths=tuple(widths),
      blocks_per_stage=(depth - 2) // divisor,
      bottleneck=bottleneck,
      **kwargs,
  )


WIDE_RESNETS = {
    f"wrn_{d}_{k}": (wide_resnet, {"depth": d, "width": k})
    for d, k in ((16, 1), (16, 2), (16, 4), (16, 8), (28, 10), (40, 1), (40, 2), (40, 4))
}

PREACT_RESNETS = {f"preact_resnet{d}": (preact_resnet, {"depth": d}) for d in (8, 14, 20, 56, 110)}
