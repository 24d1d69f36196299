"""AutoAugment's CIFAR-10 policy and Cutout (DiSK's CIFAR recipe): each operation against what
it must do to a known image, the policy's determinism per generator, the pipeline adapters."""

import numpy as np
import pytest
from PIL import Image

from kd_jax import data
from kd_jax.data import autoaugment


def _gradient(channels=3, size=32):
  row = np.arange(size, dtype=np.uint8) * 8
  return np.repeat(np.tile(row, (size, 1))[..., None], channels, axis=2)


def _apply(image, name, level, sign=1.0):
  pil = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
  return np.asarray(autoaugment.apply_operation(pil, name, level, sign)).reshape(image.shape)


def test_pixel_operations_at_their_extreme_magnitudes():
  image = _gradient()
  np.testing.assert_array_equal(_apply(image, "invert", 5), 255 - image)
  np.testing.assert_array_equal(_apply(image, "solarize", 0), image)  # threshold 256: none
  np.testing.assert_array_equal(_apply(image, "solarize", 9), 255 - image)  # threshold 0: all
  np.testing.assert_array_equal(_apply(image, "posterize", 9), image & 0xF0)  # 4 bits
  np.testing.assert_array_equal(_apply(image, "posterize", 0), image)  # 8 bits
  np.testing.assert_array_equal(_apply(image, "brightness", 0), image)  # factor 1
  darker = _apply(image, "brightness", 9, sign=-1.0)  # factor 0.1
  np.testing.assert_allclose(darker, np.round(image * 0.1), atol=1)


def test_geometric_operations_move_pixels_and_fill_with_128():
  image = np.zeros((32, 32, 3), np.uint8)
  image[10, 20] = 255
  # translate_x at level 9: 150/331 of the width = 14.5 pixels; output(x) = input(x + 14.5).
  moved = _apply(image, "translate_x", 9)
  bright = np.argwhere(moved[..., 0] == 255)
  assert len(bright) == 1 and bright[0][0] == 10 and bright[0][1] in (5, 6)
  assert (moved[:, -14:] == 128).all() and (moved[:, :17] != 128).all()
  down = _apply(image, "translate_y", 9, sign=-1.0)  # the other way: the content moves down
  assert (down[:14] == 128).all() and np.argwhere(down[..., 0] == 255)[0][0] in (24, 25)
  rotated = _apply(_gradient(), "rotate", 9)  # 30 degrees: the corners are uncovered
  assert (rotated[0, 0] == 128).all() and (rotated[-1, -1] == 128).all()
  sheared = _apply(np.full((32, 32, 3), 7, np.uint8), "shear_x", 9)  # x + 0.3·y leaves the image
  assert (sheared[-1, -5:] == 128).all() and (sheared[0] == 7).all()


def test_policy_is_deterministic_per_generator_and_keeps_shape_and_dtype():
  for channels in (1, 3):
    image = _gradient(channels)
    outs = [autoaugment.autoaugment_cifar(image, np.random.default_rng(seed)) for seed in range(40)]
    again = [
        autoaugment.autoaugment_cifar(image, np.random.default_rng(seed)) for seed in range(40)
    ]
    for a, b in zip(outs, again):
      assert a.shape == image.shape and a.dtype == np.uint8
      np.testing.assert_array_equal(a, b)
    changed = sum(not np.array_equal(out, image) for out in outs)
    assert 10 < changed < 40  # most sub-policies change the image, some draws do nothing
  assert len(autoaugment.CIFAR10_POLICY) == 25
  with pytest.raises(ValueError, match="uint8 image"):
    autoaugment.autoaugment_cifar(image.astype(np.float32), np.random.default_rng(0))


def test_cutout_clears_the_square_around_the_drawn_centre():
  image = np.full((32, 32, 3), 200, np.uint8)
  for seed in range(20):
    rng = np.random.default_rng(seed)
    y, x = rng.integers(32), rng.integers(32)
    out = autoaugment.cutout(image, np.random.default_rng(seed), size=16)
    expected = image.copy()
    expected[max(y - 8, 0) : min(y + 8, 32), max(x - 8, 0) : min(x + 8, 32)] = 0
    np.testing.assert_array_equal(out, expected)
  assert (image == 200).all()  # the input is not modified


def test_pipeline_adapters_resolve_by_name_and_compose_with_normalize():
  example = {"image": _gradient(), "label": 3}
  rng = np.random.default_rng(0)
  out = data.PadCropFlip(padding=4, fill=128)(example, rng)
  out = data.Cutout(size=16)(data.AutoAugmentCifar()(out, rng), rng)
  out = data.NormalizeImage(mean=0.5, std=0.25)(out, rng)
  assert out["image"].shape == (32, 32, 3) and out["image"].dtype == np.float32
  assert out["label"] == 3
  padded = data.pad_crop_flip(np.zeros((4, 4, 1), np.uint8), rng, padding=2, fill=128)
  assert padded.shape == (4, 4, 1) and set(np.unique(padded)) <= {0, 128}
