"""Post-activation ResNets for small images: the CIFAR family of the KD tables and DiSK's ResNet10s.

Two published families share one module, `ResNet`:

* **CIFAR ResNets** (He et al., 2016, §4.2) as configured by RepDistiller (Tian et al., 2020) and
  reused by DiSK's `resnet.py`: a 3×3 stem with `widths[0]` channels, three stages of
  `(depth − 2) / 6` basic blocks with `widths[1:]` channels and strides 1, 2, 2. `resnet20` is
  widths (16, 16, 32, 64) ≈ 0.28 M parameters for 100 classes, `resnet8x4` / `resnet32x4` are
  widths (32, 64, 128, 256) ≈ 1.23 M / 7.43 M.
* **DiSK's ResNet10 family** (Kag et al., ICLR 2023, PAPERS.md §4, `models.py` of the official
  code): a 3×3 stem with `widths[0]` channels followed by four stages of `widths` channels with
  strides 1, 2, 2, 2 (the kuangliu CIFAR ResNet18 layout). ResNet10_l = (32, 64, 128, 256) at
  64 M MACs, ResNet18 = (64, 128, 256, 512) × 2 blocks at 555 M MACs on 32×32 inputs.

Block (post-activation): `y = relu(BN(conv3×3(relu(BN(conv3×3_s(x))))) + shortcut(x))` where the
shortcut is the identity, or `BN(conv1×1_s(x))` when the stride or the channel count changes
(option B of He et al.; both source repositories use it, and the published parameter counts
include it).

All convolutions are bias-free, pooling is a global mean, so any input size and channel count
works (28×28×1 included). Pre-activation nets (WRN, PreAct ResNet) live in `preact.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from kd_jax.models.outputs import requested, select

# He et al. initialisation in fan-out mode, as both PyTorch sources use (kaiming_normal_, fan_out).
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def batch_norm(train: bool, dtype: Any, name: str | None = None) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1 on the new value ⇔ flax 0.9, eps 1e-5).

  Statistics are reduced over every axis but channels; under `jit` with a batch sharded across
  devices that reduction is already global, so no `axis_name` is needed for data parallelism.
  """
  return nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype, name=name
  )


def check_image_batch(x: jnp.ndarray, model_name: str) -> None:
  """Images must be [batch, height, width, channels]; say so instead of failing inside a conv."""
  if x.ndim != 4:
    raise ValueError(
        f"{model_name} expects images of shape [batch, height, width, channels], got shape "
        f"{tuple(x.shape)}"
    )


class BasicBlock(nn.Module):
  """Two 3×3 convolutions, post-activation (He et al., 2016, Fig. 2 left)."""

  width: int
  stride: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool, return_preact: bool = False):
    """relu(y + shortcut); with `return_preact`, (that, y + shortcut, bn2's params)."""
    conv = lambda w, k, s, name: nn.Conv(
        w,
        (k, k),
        (s, s),
        padding=k // 2,
        use_bias=False,
        kernel_init=conv_init,
        dtype=self.dtype,
        name=name,
    )
    y = conv(self.width, 3, self.stride, "conv1")(x)
    y = nn.relu(batch_norm(train, self.dtype, "bn1")(y))
    y = conv(self.width, 3, 1, "conv2")(y)
    last_bn = batch_norm(train, self.dtype, "bn2")
    y = last_bn(y)
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.width:
      shortcut = conv(self.width, 1, self.stride, "shortcut_conv")(x)
      shortcut = batch_norm(train, self.dtype, "shortcut_bn")(shortcut)
    preact = y + shortcut
    if return_preact:
      return nn.relu(preact), preact, last_bn.variables["params"]
    return nn.relu(preact)


class Bottleneck(nn.Module):
  """1×1 → 3×3 (strided) → 1×1 with 4× expansion, post-activation (He et al., 2016, Fig. 5)."""

  width: int
  stride: int = 1
  dtype: Any = jnp.float32
  expansion: int = 4

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool, return_preact: bool = False):
    """relu(y + shortcut); with `return_preact`, (that, y + shortcut, bn3's params)."""
    conv = lambda w, k, s, name: nn.Conv(
        w,
        (k, k),
        (s, s),
        padding=k // 2,
        use_bias=False,
        kernel_init=conv_init,
        dtype=self.dtype,
        name=name,
    )
    out_width = self.width * self.expansion
    y = nn.relu(batch_norm(train, self.dtype, "bn1")(conv(self.width, 1, 1, "conv1")(x)))
    y = conv(self.width, 3, self.stride, "conv2")(y)
    y = nn.relu(batch_norm(train, self.dtype, "bn2")(y))
    last_bn = batch_norm(train, self.dtype, "bn3")
    y = last_bn(conv(out_width, 1, 1, "conv3")(y))
    shortcut = x
    if self.stride != 1 or x.shape[-1] != out_width:
      shortcut = conv(out_width, 1, self.stride, "shortcut_conv")(x)
      shortcut = batch_norm(train, self.dtype, "shortcut_bn")(shortcut)
    preact = y + shortcut
    if return_preact:
      return nn.relu(preact), preact, last_bn.variables["params"]
    return nn.relu(preact)


class ResNet(nn.Module):
  """Stem conv-BN-ReLU, `len(stage_widths)` stages, global average pool, linear classifier.

  Attributes:
    stem_width: channels of the 3×3 stem convolution.
    stage_widths: channels of each stage (before the bottleneck expansion).
    blocks_per_stage: number of blocks in each stage.
    stage_strides: stride of the first block of each stage.
    block: "basic" or "bottleneck".
    num_classes: classifier outputs; `None` leaves the head out ("logits" is then None).
    dtype: compute dtype (e.g. jnp.bfloat16); parameters stay float32 and logits are returned
      in float32 so losses can stay float32 (PAPERS.md notation).

  Returns a dict: "logits" [batch, classes], "embedding" [batch, channels] (the pooled features
  the classifier sees), "features" (each stage's output map, [batch, h, w, c]), "preact_features"
  (each stage's output before its last ReLU: the last block's y + shortcut) and "preact_bn" (per
  stage, {"scale", "bias"} [batch, c] of the BatchNorm that ends that block's residual branch,
  repeated over the batch) — all with `outputs=None`, only the named ones otherwise
  (`kd_jax.models.outputs`). The pre-ReLU maps and BatchNorm parameters are what OFD reads (Heo
  et al., ICCV 2019: the margin of each channel comes from that BatchNorm, as in its code); a run
  that does not ask for them computes nothing extra.
  """

  OUTPUTS = ("logits", "embedding", "features", "preact_features", "preact_bn")

  stem_width: int
  stage_widths: Sequence[int]
  blocks_per_stage: Sequence[int]
  stage_strides: Sequence[int]
  block: str = "basic"
  num_classes: int | None = 100
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool, outputs=None) -> dict[str, Any]:
    wanted = requested(outputs, self.OUTPUTS, type(self).__name__)
    check_image_batch(x, type(self).__name__)
    if not (len(self.stage_widths) == len(self.blocks_per_stage) == len(self.stage_strides)):
      raise ValueError(
          "stage_widths, blocks_per_stage and stage_strides must have one entry per stage, "
          f"got {self.stage_widths}, {self.blocks_per_stage}, {self.stage_strides}"
      )
    block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}.get(self.block)
    if block_cls is None:
      raise ValueError(f"block must be 'basic' or 'bottleneck', got {self.block!r}")
    x = jnp.asarray(x, self.dtype)
    x = nn.Conv(
        self.stem_width,
        (3, 3),
        padding=1,
        use_bias=False,
        kernel_init=conv_init,
        dtype=self.dtype,
        name="stem_conv",
    )(x)
    x = nn.relu(batch_norm(train, self.dtype, "stem_bn")(x))
    want_preact = bool({"preact_features", "preact_bn"} & wanted)
    features, preact_features, preact_bn = [], [], []
    for stage, (width, blocks, stride) in enumerate(
        zip(self.stage_widths, self.blocks_per_stage, self.stage_strides)
    ):
      for index in range(blocks):
        block = block_cls(
            width,
            stride if index == 0 else 1,
            dtype=self.dtype,
            name=f"stage{stage + 1}_block{index + 1}",
        )
        if want_preact and index == blocks - 1:
          x, preact, bn_params = block(x, train=train, return_preact=True)
          preact_features.append(preact)
          preact_bn.append(batch_repeated(bn_params, x.shape[0]))
        else:
          x = block(x, train=train)
      features.append(x)
    embedding = jnp.mean(x, axis=(1, 2))
    logits = classifier_logits(embedding, self.num_classes, self.dtype)
    full = {"logits": logits, "embedding": embedding, "features": features}
    if want_preact:
      full.update(preact_features=preact_features, preact_bn=preact_bn)
    return select(full, wanted)


def batch_repeated(bn_params, batch_size: int) -> dict[str, jnp.ndarray]:
  """A BatchNorm's {"scale", "bias"} [c] as [batch, c]: every model output keeps a leading batch
  axis, which the teacher cache, sharding and micro-batching index."""
  return {
      name: jnp.broadcast_to(bn_params[name], (batch_size,) + bn_params[name].shape)
      for name in ("scale", "bias")
  }


def classifier_logits(embedding: jnp.ndarray, num_classes: int | None, dtype: Any):
  """The linear head shared by the conv nets: float32 logits, or None for a headless encoder.

  Call inside the model's compact `__call__`: the Dense layer is named "classifier" there.
  """
  if num_classes is None:
    return None
  return nn.Dense(num_classes, dtype=dtype, name="classifier")(embedding).astype(jnp.float32)


def cifar_resnet(depth: int, widths: Sequence[int] = (16, 16, 32, 64), **kwargs) -> ResNet:
  """RepDistiller's CIFAR ResNet-`depth`: (depth − 2)/6 basic blocks in each of three stages."""
  if depth < 8 or (depth - 2) % 6:
    raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1, got {depth}")
  if len(widths) != 4:
    raise ValueError(f"widths must be (stem, stage1, stage2, stage3), got {widths}")
  n = (depth - 2) // 6
  return ResNet(
      stem_width=widths[0],
      stage_widths=tuple(widths[1:]),
      blocks_per_stage=(n,) * 3,
      stage_strides=(1, 2, 2),
      **kwargs,
  )


def disk_resnet(widths: Sequence[int], blocks: Sequence[int] = (1, 1, 1, 1), **kwargs) -> ResNet:
  """DiSK's `NewResNet`: stem of widths[0] channels, four stages with strides 1, 2, 2, 2."""
  if len(widths) != 4 or len(blocks) != 4:
    raise ValueError(f"DiSK ResNets have four stages, got widths {widths}, blocks {blocks}")
  return ResNet(
      stem_width=widths[0],
      stage_widths=tuple(widths),
      blocks_per_stage=tuple(blocks),
      stage_strides=(1, 2, 2, 2),
      **kwargs,
  )


# Name → (constructor, its arguments). Widths and depths are those of the source repositories.
CIFAR_RESNETS = {
    **{f"resnet{d}": (cifar_resnet, {"depth": d}) for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": (cifar_resnet, {"depth": 8, "widths": (32, 64, 128, 256)}),
    "resnet32x4": (cifar_resnet, {"depth": 32, "widths": (32, 64, 128, 256)}),
}

DISK_RESNETS = {
    "resnet10_l": (disk_resnet, {"widths": (32, 64, 128, 256)}),
    "resnet10_m": (disk_resnet, {"widths": (16, 32, 64, 128)}),
    "resnet10_s": (disk_resnet, {"widths": (8, 16, 32, 64)}),
    "resnet10_xs": (disk_resnet, {"widths": (8, 16, 16, 32)}),
    "resnet10_xxs": (disk_resnet, {"widths": (8, 8, 16, 16)}),
    "resnet10_xxxs": (disk_resnet, {"widths": (4, 8, 8, 16)}),
    "resnet10": (disk_resnet, {"widths": (64, 128, 256, 512)}),
    "resnet18": (disk_resnet, {"widths": (64, 128, 256, 512), "blocks": (2, 2, 2, 2)}),
    "resnet34": (disk_resnet, {"widths": (64, 128, 256, 512), "blocks": (3, 4, 6, 3)}),
}
