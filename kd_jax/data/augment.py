"""Augmentations: pure NumPy functions on one example (or one batch, for MixUp).

Each per-example op takes its randomness as an explicit `np.random.Generator`, so a pipeline
that hands it grain's per-index generator is deterministic for a seed and resumes exactly. The
small frozen dataclasses at the bottom adapt the ops to the pipeline's transform protocol
`transform(example: dict, rng) -> dict` (see `kd_jax.data.pipeline`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import numpy as np


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
  image = np.asarray(image)
  if image.ndim != 3:
    raise ValueError(f"{name} expects one image [H, W, C], got shape {image.shape}.")
  return image


def pad_crop_flip(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    padding: int = 4,
    flip: bool = True,
    fill: int = 0,
) -> np.ndarray:
  """Pads by `padding` pixels of value `fill`, takes a random H x W crop, flips left-right with
  p = 0.5.

  The standard CIFAR augmentation (He et al., 2016, "Deep residual learning", Sec. 4.2): crop
  offsets are uniform in {0, ..., 2 * padding} on each axis. (DiSK's code pads with 128.)
  """
  image = _check_image(image, "pad_crop_flip")
  height, width = image.shape[:2]
  # Explicit canvas: several times faster than np.pad for small images.
  shape = (height + 2 * padding, width + 2 * padding, image.shape[2])
  padded = np.full(shape, fill, image.dtype)
  padded[padding : padding + height, padding : padding + width] = image
  top, left = rng.integers(0, 2 * padding + 1, size=2)
  out = padded[top : top + height, left : left + width]
  if flip and rng.random() < 0.5:
    out = out[:, ::-1]
  return np.ascontiguousarray(out)


def gaussian_noise(x: np.ndarray, rng: np.random.Generator, *, stddev: float) -> np.ndarray:
  """Returns float32 `x + eps`, eps ~ N(0, stddev^2) i.i.d. per element."""
  if stddev < 0:
    raise ValueError(f"gaussian_noise: stddev must be >= 0, got {stddev}.")
  x = np.asarray(x, np.float32)
  return x + rng.normal(0.0, stddev, size=x.shape).astype(np.float32)


def normalize_image(
    image: np.ndarray, *, mean: Sequence[float] | float = 0.0, std: Sequence[float] | float = 1.0
) -> np.ndarray:
  """uint8 [H, W, C] -> float32 (image / 255 - mean) / std, mean and std per channel."""
  image = _check_image(image, "normalize_image")
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  if np.any(std <= 0):
    raise ValueError(f"normalize_image: std must be positive, got {std}.")
  return (image.astype(np.float32) / 255.0 - mean) / std


def average_pool_image(image: np.ndarray, *, factor: int) -> np.ndarray:
  """[H, W, C] -> float32 [H / factor, W / factor, C], the mean of each factor × factor block.

  A smaller copy of a dataset's images (e.g. Fashion-MNIST at 14 × 14): a CPU-sized network then
  costs about factor² times less per example, so it can be trained to convergence.
  """
  image = _check_image(image, "average_pool_image")
  if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
    raise ValueError(f"average_pool_image: factor must be an integer >= 1, got {factor!r}.")
  height, width, channels = image.shape
  if height % factor or width % factor:
    raise ValueError(
        f"average_pool_image: the image's height and width ({height}, {width}) must be "
        f"multiples of the factor {factor}."
    )
  blocks = image.astype(np.float32).reshape(
      height // factor, factor, width // factor, factor, channels
  )
  return blocks.mean(axis=(1, 3))


def mixup(
    batch: dict[str, Any],
    rng: np.random.Generator,
    *,
    alpha: float = 1.0,
    key: str = "image",
    per_example: bool = False,
) -> dict[str, Any]:
  """MixUp (Zhang et al., ICLR 2018) of the inputs of one batch.

  x~_i = lam * x_i + (1 - lam) * x_{pi(i)},  lam ~ Beta(alpha, alpha),  pi a random permutation.
  Only the inputs are mixed: in distillation the teacher labels the mixed input itself. The batch
  gets "mixup_lambda" [batch] and "mixup_partner" [batch] (pi) so a caller that wants
  mixed hard labels can form lam * y_i + (1 - lam) * y_{pi(i)}. Padding rows ("mask" False) are
  never used as partners, so a padded eval batch stays clean.
  """
  if alpha <= 0:
    raise ValueError(f"mixup: alpha must be > 0, got {alpha}.")
  if key not in batch:
    raise KeyError(f"mixup: batch has no key {key!r}; keys are {sorted(batch)}.")
  x = np.asarray(batch[key], np.float32)
  size = x.shape[0]
  valid = np.flatnonzero(np.asarray(batch.get("mask", np.ones(size, bool))))
  partner = np.arange(size)
  partner[valid] = valid[rng.permutation(len(valid))]
  lam = rng.beta(alpha, alpha, size=size if per_example else 1).astype(np.float32)
  lam = np.broadcast_to(lam, (size,)).copy()
  lam_b = lam.reshape((size,) + (1,) * (x.ndim - 1))
  out = dict(batch)
  out[key] = lam_b * x + (1.0 - lam_b) * x[partner]
  out["mixup_lambda"] = lam
  out["mixup_partner"] = partner
  return out


# Adapters to the pipeline's `transform(example, rng) -> example` protocol.


@dataclasses.dataclass(frozen=True)
class PadCropFlip:
  key: str = "image"
  padding: int = 4
  flip: bool = True
  fill: int = 0

  def __call__(self, example, rng):
    image = pad_crop_flip(
        example[self.key], rng, padding=self.padding, flip=self.flip, fill=self.fill
    )
    return {**example, self.key: image}


@dataclasses.dataclass(frozen=True)
class GaussianNoise:
  stddev: float
  key: str = "image"

  def __call__(self, example, rng):
    return {**example, self.key: gaussian_noise(example[self.key], rng, stddev=self.stddev)}


@dataclasses.dataclass(frozen=True)
class AveragePoolImage:
  deterministic: ClassVar[bool] = True
  factor: int = 2
  key: str = "image"

  def __call__(self, example, rng):
    del rng  # Deterministic.
    return {**example, self.key: average_pool_image(example[self.key], factor=self.factor)}


@dataclasses.dataclass(frozen=True)
class NormalizeImage:
  deterministic: ClassVar[bool] = True  # the same output for every draw: teacher outputs cacheable
  mean: tuple[float, ...] | float = 0.0
  std: tuple[float, ...] | float = 1.0
  key: str = "image"

  def __call__(self, example, rng):
    del rng  # Deterministic.
    return {**example, self.key: normalize_image(example[self.key], mean=self.mean, std=self.std)}
