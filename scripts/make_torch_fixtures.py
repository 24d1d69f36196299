"""Writes the `torch.save` files that kd_jax's torch-free checkpoint reader is tested on.

Into tests/models/fixtures/torch_checkpoints/, each in both formats torch writes (the zip
archive, torch >= 1.6's default, and the legacy stream, `_use_new_zipfile_serialization=False`,
in which the official 2020 MoCo checkpoints may be):

  tensors_{zip,legacy}.pt          every storage dtype the reader maps, a permuted (non-contiguous)
                                   tensor, views sharing one storage at an offset and with strides,
                                   an nn.Parameter, a 0-d and an empty tensor, nested containers
  moco_v2_tiny_{zip,legacy}.pth.tar  the official MoCo-v2 checkpoint's structure ("epoch", "arch",
                                   "state_dict" with module.encoder_q/encoder_k/queue, "optimizer")
                                   around a 1-channel-wide ResNet-50 (MOCO_WIDTH)
  moco_v2_tiny_embedding.npy       that ResNet-50's pooled features on `moco_input()`, computed
                                   here with torch.nn.functional (torchvision's forward, eval mode)

The values come from tests/models/torch_fixtures.py, which the tests recompute without torch.
PyTorch is used here only, never by kd_jax or its tests. Run it from the repository root in an
environment with torch (the files were made with torch 2.13):

  .venv/bin/pip install torch    # or any venv with torch and numpy
  .venv/bin/python scripts/make_torch_fixtures.py
"""

import collections
import pathlib
import sys

import numpy as np
import torch

sys.path.insert(
    0, str(pathlib.Path(__file__).resolve().parents[1])
)  # for `tests` when run directly
from tests.models import torch_fixtures as recipe  # pylint: disable=g-import-not-at-top


def _torch(tree):
  """The recipe's nested containers with NumPy arrays turned into torch tensors."""
  if isinstance(tree, np.ndarray):
    return torch.from_numpy(tree.copy())
  if isinstance(tree, dict):
    return type(tree)((k, _torch(v)) for k, v in tree.items())
  if isinstance(tree, (list, tuple)):
    return type(tree)(_torch(v) for v in tree)
  return tree


def tensors(fmt: str) -> dict:
  """The tensors file; tests/models/test_torch_checkpoint.py rebuilds its expected twin."""
  dtypes = _torch(recipe.tensor_bases())
  dtypes["bfloat16"] = dtypes["bfloat16"].to(torch.bfloat16)
  if fmt == "legacy":  # torch.load cannot read a legacy file's untyped (uint16) storage
    del dtypes["uint16"]
  base = torch.from_numpy(recipe.shared_base())
  return {
      "dtypes": dtypes,
      "permuted": dtypes["float32"].permute(2, 0, 1),  # strides (1, 12, 4) over the float32 one
      "base": base,
      "window": base[5:17].view(3, 4),  # offset 5 into base's storage
      "strided": base.view(4, 5)[1:, ::2],  # offset 5, strides (5, 2)
      "parameter": torch.nn.Parameter(torch.from_numpy(recipe.pattern((2, 3), 5).astype("f4"))),
      "nested": {
          "list": [3, "text", None, base[::7]],
          "tuple": (1.5, True),
          "ordered": collections.OrderedDict([("b", 2), ("a", dtypes["int64"][1:3])]),
      },
  }


def torch_embedding(sd: dict, x: torch.Tensor) -> torch.Tensor:
  """torchvision's ResNet-50 forward (eval mode) written with torch.nn.functional: [b, c]."""
  f = torch.nn.functional
  t = lambda k: torch.from_numpy(sd[k])
  bn = lambda y, n: f.batch_norm(
      y, t(f"{n}.running_mean"), t(f"{n}.running_var"), t(f"{n}.weight"), t(f"{n}.bias"), eps=1e-5
  )
  y = f.relu(bn(f.conv2d(x, t("conv1.weight"), stride=2, padding=3), "bn1"))
  y = f.max_pool2d(y, 3, 2, 1)
  for s, blocks in enumerate(recipe.MOCO_BLOCKS, 1):
    for b in range(blocks):
      p, stride = f"layer{s}.{b}", (2 if b == 0 and s > 1 else 1)
      out = f.relu(bn(f.conv2d(y, t(f"{p}.conv1.weight")), f"{p}.bn1"))
      out = f.relu(bn(f.conv2d(out, t(f"{p}.conv2.weight"), stride=stride, padding=1), f"{p}.bn2"))
      out = bn(f.conv2d(out, t(f"{p}.conv3.weight")), f"{p}.bn3")
      if b == 0:
        y = bn(f.conv2d(y, t(f"{p}.downsample.0.weight"), stride=stride), f"{p}.downsample.1")
      y = f.relu(out + y)
  return y.mean(dim=(2, 3))


def _save(obj, path: pathlib.Path, fmt: str) -> None:
  torch.save(obj, path, _use_new_zipfile_serialization=fmt == "zip")
  # What torch reads back must be what was saved (weights_only: the same globals kd_jax allows).
  back = torch.load(path, weights_only=True)
  assert repr(back) == repr(obj), f"{path}: torch.load differs from what was saved"
  print(f"{path}: {path.stat().st_size} bytes")


def main() -> None:
  recipe.FIXTURES.mkdir(parents=True, exist_ok=True)
  for fmt in recipe.FORMATS:
    _save(tensors(fmt), recipe.tensors_file(fmt), fmt)
    checkpoint = _torch(recipe.moco_checkpoint())
    # As nn.Module.state_dict() sets it: pickled as the OrderedDict's attribute (a BUILD).
    checkpoint["state_dict"]._metadata = collections.OrderedDict(
        [("", {"version": 1}), ("module.encoder_q.bn1", {"version": 2})]
    )
    _save(checkpoint, recipe.moco_file(fmt), fmt)
  x = torch.from_numpy(recipe.moco_input().transpose(0, 3, 1, 2).copy())  # NHWC -> NCHW
  with torch.no_grad():
    embedding = torch_embedding(recipe.moco_query_encoder(), x).numpy()
  np.save(recipe.MOCO_EMBEDDING, embedding)
  print(f"{recipe.MOCO_EMBEDDING}: {embedding.shape}")


if __name__ == "__main__":
  main()
