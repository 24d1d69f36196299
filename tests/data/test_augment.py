"""Augmentations against references written from their definitions (real Fashion-MNIST images)."""

import numpy as np
import pytest

from kd_jax import data
from kd_jax.data.builders import idx_images


@pytest.fixture(scope="module")
def images():
  try:
    raw, _ = idx_images.load_idx_split(idx_images.DEBIAN_FASHION_MNIST_DIR, "t10k")
  except FileNotFoundError:
    from kd_jax.data.builders import mnist5k

    raw, _ = mnist5k.load_mnist5k()
  return raw[:64, :, :, None]


def _all_crops(image, padding):
  """Every output pad-crop-flip may produce, enumerated by brute force."""
  h, w = image.shape[:2]
  padded = np.zeros((h + 2 * padding, w + 2 * padding, image.shape[2]), image.dtype)
  padded[padding : padding + h, padding : padding + w] = image
  crops = []
  for top in range(2 * padding + 1):
    for left in range(2 * padding + 1):
      crop = padded[top : top + h, left : left + w]
      crops += [crop, crop[:, ::-1]]
  return crops


def test_pad_crop_flip_output_is_a_padded_crop_or_its_mirror(images):
  rng = np.random.default_rng(0)
  flips = 0
  for image in images[:16]:
    out = data.pad_crop_flip(image, rng, padding=3)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert any(np.array_equal(out, c) for c in _all_crops(image, 3))
    flips += not any(np.array_equal(out, c) for c in _all_crops(image, 3)[0::2])
  assert 0 < flips < 16  # Both flipped and unflipped outputs occur.


def test_pad_crop_flip_uses_every_offset():
  # A single bright pixel shows the offset directly: it moves by (padding - top, padding - left).
  image = np.zeros((8, 8, 1), np.uint8)
  image[4, 4] = 255
  rng = np.random.default_rng(1)
  positions = set()
  for _ in range(600):
    out = data.pad_crop_flip(image, rng, padding=2, flip=False)
    positions.add(tuple(np.argwhere(out[..., 0])[0]))
  assert positions == {(r, c) for r in range(2, 7) for c in range(2, 7)}


def test_gaussian_noise_statistics(images):
  x = images.astype(np.float32)
  noisy = data.gaussian_noise(x, np.random.default_rng(0), stddev=2.0)
  noise = noisy - x
  assert noisy.dtype == np.float32
  assert abs(noise.mean()) < 0.05 and abs(noise.std() - 2.0) < 0.05
  with pytest.raises(ValueError, match="stddev"):
    data.gaussian_noise(x, np.random.default_rng(0), stddev=-1.0)


def test_normalize_image_matches_formula(images):
  out = data.normalize_image(images[0], mean=0.5, std=0.25)
  np.testing.assert_allclose(out, (images[0] / 255.0 - 0.5) / 0.25, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r"\[H, W, C\]"):
    data.normalize_image(images[0, ..., 0])


def test_average_pool_image_averages_each_block(images):
  image = images[0].astype(np.float32)  # [28, 28, 1]
  out = data.average_pool_image(images[0], factor=2)
  assert out.shape == (14, 14, 1) and out.dtype == np.float32
  for row, col in ((0, 0), (3, 11), (13, 13)):  # written from the definition, block by block
    block = image[2 * row : 2 * row + 2, 2 * col : 2 * col + 2, 0]
    assert out[row, col, 0] == pytest.approx(block.mean())
  np.testing.assert_array_equal(data.average_pool_image(images[0], factor=1), image)
  adapter = data.AveragePoolImage(factor=4)({"image": images[1], "label": 2}, None)
  assert adapter["image"].shape == (7, 7, 1) and adapter["label"] == 2
  with pytest.raises(ValueError, match="multiples of the factor 3"):
    data.average_pool_image(images[0][:, :27], factor=3)
  with pytest.raises(ValueError, match="integer >= 1"):
    data.average_pool_image(images[0], factor=0)


def test_mixup_matches_definition_and_skips_padding(images):
  batch = {
      "image": images[:8].astype(np.float32),
      "label": np.arange(8),
      "mask": np.array([True] * 6 + [False] * 2),
  }
  out = data.mixup(batch, np.random.default_rng(0), alpha=0.4)
  lam, partner = out["mixup_lambda"], out["mixup_partner"]
  assert np.all(lam == lam[0]) and 0 <= lam[0] <= 1
  assert sorted(partner[:6]) == list(range(6)) and partner[6:].tolist() == [6, 7]
  for i in range(8):
    expected = lam[i] * batch["image"][i] + (1 - lam[i]) * batch["image"][partner[i]]
    np.testing.assert_allclose(out["image"][i], expected, rtol=1e-6)
  np.testing.assert_array_equal(out["label"], batch["label"])  # Teacher relabels; labels kept.
  per_example = data.mixup(batch, np.random.default_rng(0), alpha=0.4, per_example=True)
  assert len(set(per_example["mixup_lambda"].tolist())) > 1


def test_transform_adapters_compose_in_a_pipeline_protocol(images):
  example = {"image": images[0], "label": np.int64(3)}
  rng = np.random.default_rng(0)
  out = data.NormalizeImage(mean=0.5, std=0.5)(data.PadCropFlip(padding=2)(example, rng), rng)
  assert out["image"].dtype == np.float32 and out["label"] == 3
