"""Tiny real-data pieces for the engine tests: a small CNN and an MNIST-5k subset source."""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from kd_jax import data
from kd_jax import methods
from kd_jax.train import config as config_lib


class TinyCNN(nn.Module):
  """conv(stride 2) -> [BatchNorm] -> ReLU -> 2×2 mean pool -> dense; the model contract."""

  num_classes: int = 10
  width: int = 8
  use_batch_norm: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.Conv(self.width, (3, 3), strides=(2, 2), dtype=self.dtype)(x)
    if self.use_batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x)
    features = nn.relu(x)
    # Pool to 7×7 rather than globally: a global mean of 8 channels cannot tell digits apart.
    embedding = nn.avg_pool(features, (2, 2), strides=(2, 2)).reshape(x.shape[0], -1)
    logits = nn.Dense(self.num_classes, dtype=self.dtype)(embedding)
    return {"logits": logits, "embedding": embedding, "features": [features]}


class Subset:
  """The first `size` examples of a random-access source."""

  def __init__(self, source, size):
    self.source, self.size = source, min(size, len(source))

  def __len__(self):
    return self.size

  def __getitem__(self, index):
    if not 0 <= index < self.size:
      raise IndexError(index)
    return self.source[index]


@functools.lru_cache(maxsize=2)
def _mnist(split):
  return data.get_source("mnist5k", split)


class Offset(Subset):
  """`size` examples of a source starting at `start`."""

  def __init__(self, source, start, size):
    super().__init__(source, size)
    self.start = start

  def __getitem__(self, index):
    if not 0 <= index < self.size:
      raise IndexError(index)
    return self.source[self.start + index]


def mnist_small(split, *, data_dir=None, manual_dir=None):
  """Real MNIST-5k digits (kd_jax.data), cut to 512 train / 256 test examples for speed;
  "validation" is 128 further test examples (disjoint from those 256)."""
  del data_dir, manual_dir
  if split == "validation":
    return Offset(_mnist("test"), 256, 128)
  return Subset(_mnist(split), 512 if split == "train" else 256)


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  """A supervised run of TinyCNN on the MNIST subset: a handful of steps."""
  c = config_lib.default_config()
  c.dataset = "tests.train.helpers:mnist_small"
  c.model = "tests.train.helpers:TinyCNN"
  c.model_kwargs = ml_collections.ConfigDict({"width": 8})
  c.batch_size = 32
  c.eval_batch_size = 64
  c.total_steps = 12
  c.log_every = 1
  c.checkpoint_every = 4
  c.progress_bar = False
  c.optimizer.learning_rate = 0.05
  for key, value in overrides.items():
    c[key] = value
  return c


@dataclasses.dataclass(frozen=True)
class SlowSupervised(methods.Supervised):
  """Supervised, plus a host callback that sleeps each step (numerics unchanged), so a test can
  SIGKILL a run reliably in the middle."""

  seconds_per_step: float = 0.15

  def loss(self, params, state, io):
    jax.debug.callback(lambda: time.sleep(self.seconds_per_step))
    return super().loss(params, state, io)


def three_class_cnn(num_classes, **kwargs):
  """Ignores `num_classes`: for the logits-shape check that model_kwargs cannot see."""
  del num_classes
  return TinyCNN(num_classes=3, **kwargs)
