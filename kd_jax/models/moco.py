"""The MoCo-v2 ResNet-50 teacher of the CompRess `paper` table, from the official checkpoint.

The official MoCo checkpoint (facebookresearch/moco, `moco_v2_800ep_pretrain.pth.tar`) is a
`torch.save`d dict whose "state_dict" holds a torchvision ResNet-50 under `module.encoder_q.*`
(and the key encoder under `module.encoder_k.*`, plus the queue). `load_moco_state_dict` reads
that file (or a bare state dict) with `kd_jax.models.torch_checkpoint`, a torch-free reader of
both `torch.save` formats (the 2020 files may predate the zip format), and
`convert_moco_state_dict` maps the query encoder onto `ImageNetResNet50`'s params and BatchNorm
statistics:

  conv1 / bn1                         -> stem_conv / stem_bn
  layer{s}.{b}.conv{k} / bn{k}        -> stage{s}_block{b+1}/conv{k} / bn{k}
  layer{s}.{b}.downsample.0 / .1      -> stage{s}_block{b+1}/shortcut_conv / shortcut_bn
  fc.*                                -> dropped: MoCo-v2's MLP projection head; the teacher's
                                         embedding is the 2048-d pooled feature it reads.

Convolution kernels go from PyTorch's OIHW to flax's HWIO; BatchNorm weight / bias /
running_mean / running_var become scale / bias / mean / var; `num_batches_tracked` is dropped.
The network is torchvision's ResNet-50 (7×7 stride-2 stem, 3×3 max-pool, bottlenecks with the
stride on the 3×3 convolution, v1.5), built from the blocks of `kd_jax.models.resnet`.

The CompRess table (configs/compress.py) uses it as it comes: as every student's teacher
(`pretrained: True`, the trainer calls `load_pretrained`) and as the model of the 0-step teacher
row. `frozen_batch_norm=True` (the default) runs BatchNorm on the loaded running statistics even
in train mode, so a run that does train it (a fine-tuning stage) never re-estimates MoCo's
statistics from its own batches.
"""

from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kd_jax.models import resnet
from kd_jax.models import torch_checkpoint
from kd_jax.models.outputs import requested, select

BLOCKS = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)
PREFIX = "module.encoder_q."


class ImageNetResNet50(nn.Module):
  """torchvision's ResNet-50 layout; outputs "logits" (None when headless), "embedding" [b, 2048]
  and "features" (each stage's map).

  `width` is the stem's channels and the first stage's bottleneck width (later stages double
  it): 64 is ResNet-50; the tests load a full-layout checkpoint of width 1."""

  OUTPUTS = ("logits", "embedding", "features")

  num_classes: int | None = None
  frozen_batch_norm: bool = False
  dtype: Any = jnp.float32
  width: int = WIDTHS[0]

  @nn.compact
  def __call__(self, x, *, train: bool, outputs=None):
    wanted = requested(outputs, self.OUTPUTS, type(self).__name__)
    resnet.check_image_batch(x, type(self).__name__)
    bn_train = train and not self.frozen_batch_norm
    x = jnp.asarray(x, self.dtype)
    x = nn.Conv(
        self.width, (7, 7), (2, 2), padding=3, use_bias=False, dtype=self.dtype, name="stem_conv"
    )(x)
    x = nn.relu(resnet.batch_norm(bn_train, self.dtype, "stem_bn")(x))
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    features = []
    for stage, (width, blocks) in enumerate(zip(WIDTHS, BLOCKS)):
      for index in range(blocks):
        x = resnet.Bottleneck(
            width * self.width // WIDTHS[0],
            2 if index == 0 and stage > 0 else 1,
            dtype=self.dtype,
            name=f"stage{stage + 1}_block{index + 1}",
        )(x, train=bn_train)
      features.append(x)
    embedding = jnp.mean(x, axis=(1, 2)).astype(jnp.float32)
    logits = resnet.classifier_logits(embedding, self.num_classes, self.dtype)
    return select({"logits": logits, "embedding": embedding, "features": features}, wanted)


def _target(key: str) -> tuple[str, tuple[str, ...], str] | None:
  """torch key (without the prefix) -> (collection, path, leaf) of our variables; None: dropped."""
  if key.startswith("fc.") or key.endswith("num_batches_tracked"):
    return None
  match = re.fullmatch(r"layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.[01])\.(\w+)", key)
  if match:
    stage, block, layer, leaf = match.groups()
    layer = {"downsample.0": "shortcut_conv", "downsample.1": "shortcut_bn"}.get(layer, layer)
    path = (f"stage{stage}_block{int(block) + 1}", layer)
  else:
    match = re.fullmatch(r"(conv1|bn1)\.(\w+)", key)
    if not match:
      raise ValueError(f"MoCo checkpoint: unexpected key {PREFIX + key!r}.")
    layer, leaf = match.groups()
    path = ({"conv1": "stem_conv", "bn1": "stem_bn"}[layer],)
  names = {
      "weight": ("params", "kernel" if "conv" in path[-1] else "scale"),
      "bias": ("params", "bias"),
      "running_mean": ("batch_stats", "mean"),
      "running_var": ("batch_stats", "var"),
  }
  if leaf not in names:
    raise ValueError(f"MoCo checkpoint: unexpected key {PREFIX + key!r}.")
  collection, name = names[leaf]
  return collection, path, name


def convert_moco_state_dict(state_dict: dict[str, Any], prefix: str = PREFIX) -> dict:
  """{"params", "batch_stats"} of `ImageNetResNet50` from MoCo's state dict (NumPy arrays, as
  `load_moco_state_dict` returns, or torch tensors). Keys outside `prefix` (the key encoder, the
  queue) are ignored."""
  variables: dict = {"params": {}, "batch_stats": {}}
  found = 0
  for key, value in state_dict.items():
    if not key.startswith(prefix):
      continue
    target = _target(key[len(prefix) :])
    if target is None:
      continue
    collection, path, name = target
    array = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
    if name == "kernel":
      array = array.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    node = variables[collection]
    for part in path:
      node = node.setdefault(part, {})
    node[name] = jnp.asarray(array, jnp.float32)
    found += 1
  if not found:
    raise ValueError(f"MoCo checkpoint: no key starts with {prefix!r}; is it a MoCo file?")
  return variables


def load_moco_state_dict(path: str) -> dict[str, Any]:
  """The state dict (NumPy arrays) of an official MoCo file ({"state_dict": ...}) or of a bare
  state dict saved with `torch.save`; read without torch."""
  checkpoint = torch_checkpoint.load(path)
  if not isinstance(checkpoint, dict):
    raise ValueError(f"{path}: holds a {type(checkpoint).__name__}, not a (state) dict.")
  return checkpoint.get("state_dict", checkpoint)


class MocoResNet50(ImageNetResNet50):
  """ImageNetResNet50 whose `load_pretrained` (called by the trainer after `init`) reads the
  MoCo file `checkpoint`; shapes must match the module's exactly."""

  checkpoint: str = ""

  def load_pretrained(self, variables):
    if not self.checkpoint:
      raise ValueError("moco_v2_resnet50: set checkpoint (e.g. $KD_JAX_MOCO_CHECKPOINT).")
    loaded = convert_moco_state_dict(load_moco_state_dict(self.checkpoint))
    out = dict(variables)
    for collection in ("params", "batch_stats"):
      want = jax.tree.map(
          jnp.shape, {k: v for k, v in variables[collection].items() if k != "classifier"}
      )
      have = jax.tree.map(jnp.shape, loaded[collection])
      if want != have:
        raise ValueError(f"{self.checkpoint}: {collection} do not match a ResNet-50.")
      out[collection] = {**variables[collection], **loaded[collection]}
    return out


def moco_v2_resnet50(
    num_classes: int | None = None,
    *,
    checkpoint: str = "",
    frozen_batch_norm: bool = True,
    dtype=jnp.float32,
) -> MocoResNet50:
  """The MoCo-v2 teacher (headless by default; BatchNorm frozen on its loaded statistics)."""
  return MocoResNet50(
      num_classes=num_classes,
      checkpoint=checkpoint,
      frozen_batch_norm=frozen_batch_norm,
      dtype=dtype,
  )
