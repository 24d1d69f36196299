"""AutoAugment's CIFAR-10 policy and Cutout: the train augmentation of DiSK's CIFAR recipe.

AutoAugment (Cubuk et al., CVPR 2019, "AutoAugment: Learning augmentation strategies from data",
the policy found on reduced CIFAR-10): each image gets one of 25 sub-policies drawn uniformly;
a sub-policy is two operations, each applied with its own probability at a magnitude index
m ∈ {0, ..., 9} mapped linearly onto the operation's range (geometric and enhancement
magnitudes get a random sign). Cutout (DeVries & Taylor, 2017): a size × size square centred on
a uniformly random pixel, clipped at the border, is set to `fill`.

Both work on uint8 [H, W, C] images (C = 1 or 3) with an explicit `np.random.Generator`, so a
pipeline stays deterministic per seed and resumes exactly; they go before `NormalizeImage`.
The pixel operations are Pillow's (`ImageOps`, `ImageEnhance`, affine transforms).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

# (operation, probability, magnitude index) pairs: the 25 sub-policies of the CIFAR-10 policy.
CIFAR10_POLICY = (
    (("invert", 0.1, 7), ("contrast", 0.2, 6)),
    (("rotate", 0.7, 2), ("translate_x", 0.3, 9)),
    (("sharpness", 0.8, 1), ("sharpness", 0.9, 3)),
    (("shear_y", 0.5, 8), ("translate_y", 0.7, 9)),
    (("autocontrast", 0.5, 8), ("equalize", 0.9, 2)),
    (("shear_y", 0.2, 7), ("posterize", 0.3, 7)),
    (("color", 0.4, 3), ("brightness", 0.6, 7)),
    (("sharpness", 0.3, 9), ("brightness", 0.7, 9)),
    (("equalize", 0.6, 5), ("equalize", 0.5, 1)),
    (("contrast", 0.6, 7), ("sharpness", 0.6, 5)),
    (("color", 0.7, 7), ("translate_x", 0.5, 8)),
    (("equalize", 0.3, 7), ("autocontrast", 0.4, 8)),
    (("translate_y", 0.4, 3), ("sharpness", 0.2, 6)),
    (("brightness", 0.9, 6), ("color", 0.2, 8)),
    (("solarize", 0.5, 2), ("invert", 0.0, 3)),
    (("equalize", 0.2, 0), ("autocontrast", 0.6, 0)),
    (("equalize", 0.2, 8), ("equalize", 0.6, 4)),
    (("color", 0.9, 9), ("equalize", 0.6, 6)),
    (("autocontrast", 0.8, 4), ("solarize", 0.2, 8)),
    (("brightness", 0.1, 3), ("color", 0.7, 0)),
    (("solarize", 0.4, 5), ("autocontrast", 0.9, 3)),
    (("translate_y", 0.9, 9), ("translate_y", 0.7, 9)),
    (("autocontrast", 0.9, 2), ("solarize", 0.8, 3)),
    (("equalize", 0.8, 8), ("invert", 0.1, 3)),
    (("translate_y", 0.7, 9), ("autocontrast", 0.9, 1)),
)

# The magnitude at index 9 (index m gives m/9 of it); posterize goes from 8 bits down to 4.
_MAX_MAGNITUDE = {
    "shear_x": 0.3,
    "shear_y": 0.3,
    "translate_x": 150 / 331,  # of the image size, as in the paper's CIFAR implementation
    "translate_y": 150 / 331,
    "rotate": 30.0,
    "color": 0.9,
    "contrast": 0.9,
    "sharpness": 0.9,
    "brightness": 0.9,
    "solarize": 256.0,
}
_SIGNED = {"shear_x", "shear_y", "translate_x", "translate_y", "rotate"}
_ENHANCE = {
    "color": ImageEnhance.Color,
    "contrast": ImageEnhance.Contrast,
    "sharpness": ImageEnhance.Sharpness,
    "brightness": ImageEnhance.Brightness,
}


def apply_operation(
    image: Image.Image, name: str, level: int, sign: float, *, fill: int = 128
) -> Image.Image:
  """One AutoAugment operation at magnitude index `level` (0–9); `sign` ±1 for the signed and
  enhancement operations. Geometric operations fill uncovered pixels with `fill`."""
  if name in ("autocontrast", "equalize", "invert"):
    return getattr(ImageOps, name)(image)
  if name == "posterize":
    return ImageOps.posterize(image, int(round(8 - 4 * level / 9)))
  magnitude = _MAX_MAGNITUDE[name] * level / 9
  if name == "solarize":
    return ImageOps.solarize(image, 256 - magnitude)
  if name in _ENHANCE:
    return _ENHANCE[name](image).enhance(1 + sign * magnitude)
  fillcolor = fill if image.mode == "L" else (fill,) * len(image.getbands())
  if name == "rotate":
    return image.rotate(sign * magnitude, fillcolor=fillcolor)
  shift = sign * magnitude
  width, height = image.size
  coefficients, resample = {
      "shear_x": ((1, shift, 0, 0, 1, 0), Image.BICUBIC),
      "shear_y": ((1, 0, 0, shift, 1, 0), Image.BICUBIC),
      "translate_x": ((1, 0, shift * width, 0, 1, 0), Image.NEAREST),
      "translate_y": ((1, 0, 0, 0, 1, shift * height), Image.NEAREST),
  }[name]
  return image.transform(image.size, Image.AFFINE, coefficients, resample, fillcolor=fillcolor)


def _as_pil(image: np.ndarray) -> Image.Image:
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[2] not in (1, 3) or image.dtype != np.uint8:
    raise ValueError(
        f"AutoAugment expects one uint8 image [H, W, 1 or 3] (before NormalizeImage), got "
        f"{image.dtype} {image.shape}."
    )
  return Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)


def autoaugment_cifar(image: np.ndarray, rng: np.random.Generator, *, fill: int = 128):
  """A random sub-policy of CIFAR10_POLICY applied to one uint8 image; same shape and dtype."""
  pil = _as_pil(image)
  for name, probability, level in CIFAR10_POLICY[rng.integers(len(CIFAR10_POLICY))]:
    if rng.random() < probability:
      sign = 1.0 if rng.random() < 0.5 else -1.0
      pil = apply_operation(pil, name, level, sign, fill=fill)
  out = np.asarray(pil, np.uint8)
  return out.reshape(np.asarray(image).shape)


def cutout(image: np.ndarray, rng: np.random.Generator, *, size: int = 16, fill: int = 0):
  """Sets the size × size square centred on a uniformly random pixel (clipped) to `fill`."""
  image = np.array(image, copy=True)
  if image.ndim != 3 or size < 1:
    raise ValueError(
        f"cutout expects one image [H, W, C] and size >= 1, got {image.shape}, {size}."
    )
  height, width = image.shape[:2]
  y, x = rng.integers(height), rng.integers(width)
  top, left = max(y - size // 2, 0), max(x - size // 2, 0)
  image[top : min(y + size // 2, height), left : min(x + size // 2, width)] = fill
  return image


@dataclasses.dataclass(frozen=True)
class AutoAugmentCifar:
  """The CIFAR-10 AutoAugment policy as a pipeline transform (uint8 images)."""

  fill: int = 128
  key: str = "image"

  def __call__(self, example, rng):
    return {**example, self.key: autoaugment_cifar(example[self.key], rng, fill=self.fill)}


@dataclasses.dataclass(frozen=True)
class Cutout:
  size: int = 16
  fill: int = 0
  key: str = "image"

  def __call__(self, example, rng):
    return {**example, self.key: cutout(example[self.key], rng, size=self.size, fill=self.fill)}
