"""What the files in tests/models/fixtures/torch_checkpoints/ hold, as NumPy recipes.

scripts/make_torch_fixtures.py turns these arrays into torch tensors and `torch.save`s them; the
tests recompute them here, without torch, and compare with what `kd_jax.models.torch_checkpoint`
reads. Every value comes from integer arithmetic (`pattern`) and one correctly rounded float64
operation, so it is the same bit for bit on any machine and NumPy version (a seeded generator's
stream is not guaranteed to be).
"""

from __future__ import annotations

import collections
import pathlib

import numpy as np

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "torch_checkpoints"
FORMATS = ("zip", "legacy")  # torch >= 1.6's default and `_use_new_zipfile_serialization=False`
# The MoCo fixture's ResNet-50 has the full layout (every key of torchvision's resnet50) but
# 1 stem / first-stage channel instead of 64 (later stages 2, 4, 8; 32 output channels): the
# mapping is the same, most kernels still have in != out (a swapped transpose changes their shape)
# and the two files stay near 100 KB each, mostly zip records of the 322 tensors.
MOCO_WIDTH = 1
MOCO_BLOCKS = (3, 4, 6, 3)
MOCO_DIM = 8  # MoCo's feature dimension (128 in the paper)
MOCO_QUEUE = 16  # queue length (65536 in the paper)


def moco_file(fmt: str) -> pathlib.Path:
  return FIXTURES / f"moco_v2_tiny_{fmt}.pth.tar"


def tensors_file(fmt: str) -> pathlib.Path:
  return FIXTURES / f"tensors_{fmt}.pt"


# The embedding torchvision-style PyTorch math gives for `moco_input()` (made by the script).
MOCO_EMBEDDING = FIXTURES / "moco_v2_tiny_embedding.npy"


def pattern(shape, seed: int) -> np.ndarray:
  """Deterministic values in [-1, 1] (multiples of 1/128), float64, varying along every axis."""
  count = int(np.prod(shape, dtype=np.int64))
  ints = (np.arange(count, dtype=np.int64) * 7919 + seed * 104729) % 257 - 128
  return (ints / 128.0).reshape(shape)


def moco_query_encoder(width: int = MOCO_WIDTH) -> dict[str, np.ndarray]:
  """A torchvision ResNet-50 state dict (keys without prefix) plus MoCo-v2's MLP head `fc.*`."""
  sd: dict[str, np.ndarray] = {}

  def conv(name, out, inp, k):
    sd[f"{name}.weight"] = (pattern((out, inp, k, k), len(sd)) / np.sqrt(inp * k * k)).astype(
        np.float32
    )

  def bn(name, c):
    sd[f"{name}.weight"] = (1 + pattern(c, len(sd)) / 2).astype(np.float32)
    sd[f"{name}.bias"] = (pattern(c, len(sd)) / 10).astype(np.float32)
    sd[f"{name}.running_mean"] = (pattern(c, len(sd)) / 10).astype(np.float32)
    sd[f"{name}.running_var"] = (1 + pattern(c, len(sd)) / 2).astype(np.float32)
    sd[f"{name}.num_batches_tracked"] = np.array(7, np.int64)

  conv("conv1", width, 3, 7)
  bn("bn1", width)
  inp = width
  for s, blocks in enumerate(MOCO_BLOCKS, 1):
    stage_width = width * 2 ** (s - 1)
    for b in range(blocks):
      p = f"layer{s}.{b}"
      conv(f"{p}.conv1", stage_width, inp, 1)
      bn(f"{p}.bn1", stage_width)
      conv(f"{p}.conv2", stage_width, stage_width, 3)
      bn(f"{p}.bn2", stage_width)
      conv(f"{p}.conv3", 4 * stage_width, stage_width, 1)
      bn(f"{p}.bn3", 4 * stage_width)
      if b == 0:
        conv(f"{p}.downsample.0", 4 * stage_width, inp, 1)
        bn(f"{p}.downsample.1", 4 * stage_width)
      inp = 4 * stage_width
  # MoCo-v2's projection head (Linear, ReLU, Linear): in the file, dropped by the converter.
  for name, shape in (("fc.0", (inp, inp)), ("fc.2", (MOCO_DIM, inp))):
    sd[f"{name}.weight"] = (pattern(shape, len(sd)) / 8).astype(np.float32)
    sd[f"{name}.bias"] = (pattern(shape[0], len(sd)) / 8).astype(np.float32)
  return sd


def moco_checkpoint() -> dict:
  """The official file's structure (main_moco.py's save_checkpoint), small.

  The key encoder is a momentum copy of the query encoder in the real file; here only its stem is
  kept (different values), enough to show the converter ignores it. Likewise the optimizer state
  holds SGD momentum buffers for two parameters only."""
  query = moco_query_encoder()
  # `module.state_dict()` is an OrderedDict (the script also gives it its `_metadata` attribute).
  state = collections.OrderedDict((f"module.encoder_q.{k}", v) for k, v in query.items())
  for i, key in enumerate(("conv1.weight", "bn1.weight", "bn1.bias")):
    state[f"module.encoder_k.{key}"] = (
        query[key] + pattern(query[key].shape, 1000 + i) / 64
    ).astype(np.float32)
  state["module.queue"] = (pattern((MOCO_DIM, MOCO_QUEUE), 2000) / 4).astype(np.float32)
  state["module.queue_ptr"] = np.array([0], np.int64)
  momentum = {
      0: {"momentum_buffer": (pattern(query["conv1.weight"].shape, 3000) / 100).astype(np.float32)},
      1: {"momentum_buffer": (pattern(query["bn1.weight"].shape, 3001) / 100).astype(np.float32)},
  }
  group = {
      "lr": 0.03,
      "momentum": 0.9,
      "dampening": 0,
      "weight_decay": 0.0001,
      "nesterov": False,
      "params": [0, 1],  # the real file lists all 161 parameters' ids
  }
  return {
      "epoch": 800,
      "arch": "resnet50",
      "state_dict": state,
      "optimizer": {"state": momentum, "param_groups": [group]},
  }


def moco_input() -> np.ndarray:
  """The images of the embedding check: [2, 32, 32, 3] float32 (NHWC)."""
  return pattern((2, 32, 32, 3), 4000).astype(np.float32)


def tensor_bases() -> dict[str, np.ndarray]:
  """One array per dtype the reader maps, with values that dtype represents exactly."""
  return {
      "float32": (np.arange(24).reshape(2, 3, 4) / 4 - 3).astype(np.float32),
      "float64": np.arange(5) / 3,
      "float16": (np.arange(12).reshape(3, 4) / 8 - 0.75).astype(np.float16),
      # bfloat16 holds 8 significant bits: multiples of 1/4 up to 8 are exact.
      "bfloat16": (np.arange(6) / 4 - 0.5).astype(np.float32),
      # Beyond 32 bits and negative: a 4-byte or unsigned misreading changes them.
      "int64": np.array([-(2**40), -1, 0, 1, 2**33 + 5, 2**62], np.int64),
      "int32": np.array([-(2**31), -7, 0, 2**31 - 1], np.int32),
      "int16": np.array([-(2**15), 3, 2**15 - 1], np.int16),
      "int8": np.array([-128, -1, 0, 127], np.int8),
      "uint8": np.arange(0, 256, 51, dtype=np.uint8),
      "uint16": np.array([0, 1, 2**16 - 1], np.uint16),  # torch >= 2.3: _rebuild_tensor_v3
      "bool": np.arange(7) % 3 == 0,
      "scalar": np.array(7, np.int64),  # 0-d, like BatchNorm's num_batches_tracked
      "empty": np.zeros((0, 3), np.float32),
  }


def shared_base() -> np.ndarray:
  """The storage that tensors_*.pt's views share: 20 float32 values."""
  return (np.arange(20) - 10).astype(np.float32) / 2
