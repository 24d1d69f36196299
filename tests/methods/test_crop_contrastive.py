"""The self-supervised teacher objective of SEA's cpu table (kd_jax.methods.crop_contrastive):
NT-Xent against a NumPy reference written from its equation, the correspondence accuracy, the
two-crop batch transform it trains on, and a short run through the real trainer in which the
crops of one clip come to match."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from kd_jax.data import sea_general
from kd_jax.losses import contrastive
from kd_jax.methods import base, crop_contrastive
from kd_jax.models import audio
from kd_jax.train import config as config_lib
from kd_jax.train import loop

CONTEXT = base.RunContext(10, 2, 40, 8, 3, seed=0)


def _nt_xent_numpy(z, pair, tau):
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  sim = z @ z.T / tau
  out = []
  for i in range(len(z)):
    (p,) = [j for j in range(len(z)) if j != i and pair[j] == pair[i]]
    others = [a for a in range(len(z)) if a != i]
    out.append(-(sim[i, p] - np.log(np.sum(np.exp(sim[i, others])))))
  return np.array(out)


def test_nt_xent_matches_numpy_and_match_finds_the_other_crop():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(8, 5)).astype(np.float32)
  pair = np.array([0, 1, 2, 3, 0, 1, 2, 3])
  loss, match = crop_contrastive.nt_xent(jnp.asarray(z), jnp.asarray(pair), temperature=0.3)
  np.testing.assert_allclose(loss, _nt_xent_numpy(z, pair, 0.3), rtol=1e-5, atol=1e-5)
  # Crops that nearly coincide with their pair are all matched and cost little.
  near = np.concatenate([z[:4], z[:4] + 1e-3])
  loss_near, match_near = crop_contrastive.nt_xent(
      jnp.asarray(near), jnp.asarray(pair), temperature=0.1
  )
  np.testing.assert_array_equal(match_near, np.ones(8))
  assert float(jnp.mean(loss_near)) < float(jnp.mean(loss))
  expected = [
      pair[np.argmax(np.where(np.eye(8, dtype=bool), -np.inf, _cos(z))[i])] == pair[i]
      for i in range(8)
  ]
  np.testing.assert_array_equal(match, np.array(expected, np.float32))


def test_nt_xent_equals_supcon_with_the_clip_as_label_and_ignores_padded_views():
  rng = np.random.default_rng(3)
  z = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  pair = jnp.array([0, 1, 2, 0, 1, 2])
  loss, _ = crop_contrastive.nt_xent(z, pair, temperature=0.2)
  supcon, _ = contrastive.supervised_contrastive(z, pair, temperature=0.2)
  np.testing.assert_allclose(loss, supcon, rtol=1e-6)
  # Padding (clip 2's views) neither counts nor takes part as a negative.
  valid = jnp.array([True, True, False, True, True, False])
  masked, match = crop_contrastive.nt_xent(z, pair, temperature=0.2, valid=valid)
  keep = np.array([0, 1, 3, 4])
  alone, alone_match = crop_contrastive.nt_xent(z[keep], pair[keep], temperature=0.2)
  np.testing.assert_allclose(masked[keep], alone, rtol=1e-6)
  np.testing.assert_array_equal(match[keep], alone_match)
  assert float(masked[2]) == float(masked[5]) == float(match[2]) == 0.0


def _cos(z):
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  return z @ z.T


def test_loss_reads_the_pairs_through_the_projection_and_refuses_a_batch_without_them():
  method = crop_contrastive.CropContrastive(temperature=0.5, projection_dim=3)
  h = jnp.asarray(np.random.default_rng(1).normal(size=(6, 4)), jnp.float32)
  io = base.StepIO(student={"embedding": h}, teachers=(), batch={}, context=CONTEXT)
  variables = method.init(jax.random.key(0), io)
  assert variables.params["w1"].shape == (4, 4) and variables.params["w2"].shape == (4, 3)
  with pytest.raises(ValueError, match="two_crops"):
    method.loss(variables.params, {}, io)
  pair = jnp.array([0, 1, 2, 0, 1, 2])
  io = base.StepIO(student={"embedding": h}, teachers=(), batch={"pair": pair}, context=CONTEXT)
  loss, aux = method.loss(variables.params, {}, io)
  z = crop_contrastive.projection(variables.params, h)
  np.testing.assert_allclose(loss, np.mean(_nt_xent_numpy(np.asarray(z), pair, 0.5)), rtol=1e-5)
  assert set(aux.metrics) == {"crop_nt_xent", "crop_match"}
  with pytest.raises(ValueError, match="temperature"):
    crop_contrastive.CropContrastive(temperature=0.0)


def test_two_crops_doubles_the_batch_with_crops_of_each_clip():
  rng = np.random.default_rng(2)
  clips = rng.normal(size=(3, 200)).astype(np.float32)
  batch = {"audio": clips, "sample_rate": np.full(3, 100, np.int32), "label": np.arange(3)}
  out = sea_general.TwoCrops(seconds=0.5)(batch, np.random.default_rng(0))
  assert out["audio"].shape == (6, 50)
  np.testing.assert_array_equal(out["pair"], [0, 1, 2, 0, 1, 2])
  np.testing.assert_array_equal(out["label"], [0, 1, 2, 0, 1, 2])
  starts = []
  for row, clip in zip(out["audio"], np.concatenate([clips, clips])):
    (start,) = [s for s in range(151) if np.array_equal(clip[s : s + 50], row)]
    starts.append(start)
  assert len(set(starts)) > 1  # independent offsets
  with pytest.raises(ValueError, match="TwoCrops"):
    sea_general.TwoCrops(seconds=3.0)(batch, np.random.default_rng(0))


RATE = 8000
MEL = audio.MelConfig(sample_rate=RATE, n_fft=256, hop_length=64, n_mels=16)


def tiny_net(num_classes=None, **kwargs):
  return audio.L3AudioNet(filters=(4, 8), mel=MEL, num_classes=num_classes, **kwargs)


def two_second_tones(split, *, data_dir=None, manual_dir=None):
  """Clips of 0.5 s at 8 kHz, each a chord of its own random frequencies: crops of one clip share
  them, crops of two clips do not."""
  del data_dir, manual_dir
  rng = np.random.default_rng({"train": 0, "validation": 1, "test": 2}[split])
  t = np.arange(RATE // 2) / RATE
  out = []
  for _ in range({"train": 64, "validation": 16, "test": 16}[split]):
    wave = sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(200, 3500, size=3))
    out.append({"audio": wave.astype(np.float32), "sample_rate": np.int32(RATE)})
  return out


short_crops = sea_general.TwoCrops(seconds=0.2)


@pytest.mark.slow
def test_crops_of_a_clip_come_to_match_through_the_trainer(tmp_path):
  c = config_lib.default_config()
  c.dataset = "tests.methods.test_crop_contrastive:two_second_tones"
  c.input_key, c.num_classes = "audio", 1
  c.model = "tests.methods.test_crop_contrastive:tiny_net"
  c.method = ml_collections.ConfigDict(
      {"name": "kd_jax.methods.crop_contrastive:CropContrastive", "crop_samples": 1600}
  )
  c.batch_transforms = ("tests.methods.test_crop_contrastive:short_crops",)
  c.batch_size, c.eval_batch_size, c.total_steps, c.checkpoint_every = 16, 16, 40, 40
  c.progress_bar, c.log_every = False, 10
  c.optimizer.name, c.optimizer.learning_rate, c.optimizer.momentum = "adam", 3e-3, None
  c.evals = ml_collections.ConfigDict({"validation": {"kind": "metrics", "split": "validation"}})
  results = loop.train_and_evaluate(c, str(tmp_path / "run"))
  validation = results["evals"]["validation"]
  # Chance is 1/31 (the other crop among 31 views); distinct chords are easy to tell apart.
  assert validation["crop_match"] > 0.5, validation
