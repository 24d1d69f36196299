"""SEA (PAPERS.md §1): φ against scikit-learn, the four sampling strategies, A-weighting against
IEC 61672, the loss against NumPy, and a tiny run through the real trainer on synthetic audio."""

import dataclasses
import itertools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from sklearn import decomposition, preprocessing

from kd_jax.data import loudness
from kd_jax.methods import base, sea, sea_sampling
from kd_jax.models import audio
from kd_jax.train import config as config_lib
from kd_jax.train import loop, prepare

RATE = 8000
CONTEXT = base.RunContext(10, 2, 40, 8, 3, seed=0)


# ------------------------------------------------------------------------------------------------
# φ and the loss.


def test_phi_matches_scikit_learn_and_is_identity_at_full_width():
  rng = np.random.default_rng(0)
  mixing = rng.normal(size=(16, 16))
  sample = rng.normal(size=(200, 16)) @ mixing + 3.0
  held_out = rng.normal(size=(10, 16)) @ mixing + 3.0
  phi = sea.fit_phi(sample, 4)
  scaler = preprocessing.StandardScaler().fit(sample)
  pca = decomposition.PCA(n_components=4).fit(scaler.transform(sample))
  expected = pca.transform(scaler.transform(held_out))
  np.testing.assert_allclose(sea.apply_phi(phi, held_out), expected, rtol=1e-4, atol=1e-4)
  identity = sea.fit_phi(sample, 16)
  np.testing.assert_allclose(sea.apply_phi(identity, held_out), held_out, rtol=1e-6)
  with pytest.raises(ValueError, match="raise sample_size"):
    sea.fit_phi(sample[:3], 4)


def _io(student, teacher, constants, params=None):
  return base.StepIO(
      student={"embedding": jnp.asarray(student), "logits": None},
      teachers=({"embedding": jnp.asarray(teacher)},),
      batch={},
      context=CONTEXT,
      constants=jax.tree.map(jnp.asarray, constants),
      student_variables={"params": params or {}},
  )


def test_loss_and_eval_metric_match_numpy():
  rng = np.random.default_rng(1)
  teacher = rng.normal(size=(50, 8)).astype(np.float32)
  phi = sea.fit_phi(teacher, 3)
  student = rng.normal(size=(6, 3)).astype(np.float32)
  params = {
      "conv": {"kernel": rng.normal(size=(3, 3, 1, 2)), "bias": np.ones(2)},
      "dense": {"kernel": rng.normal(size=(4, 3))},  # not a convolution: no L2
  }
  method = sea.SEA(dim=3, conv_l2=0.01)
  io = _io(student, teacher[:6], phi, params)
  loss, aux = method.loss({}, {}, io)
  target = ((teacher[:6] - phi["mean"]) / phi["scale"] - phi["pca_mean"]) @ phi["components"].T
  per_example = np.mean((student - target) ** 2, axis=1)
  l2 = np.sum(params["conv"]["kernel"] ** 2)
  np.testing.assert_allclose(float(aux.metrics["embedding_mse"]), per_example.mean(), rtol=1e-5)
  np.testing.assert_allclose(float(loss), per_example.mean() + 0.01 * l2, rtol=1e-5)
  metrics = method.eval_metrics({}, {}, io)
  np.testing.assert_allclose(metrics["embedding_mse"], per_example, rtol=1e-5)
  grad = jax.grad(lambda s: method.loss({}, {}, _io(s, teacher[:6], phi))[0])(student)
  np.testing.assert_allclose(grad, 2 * (student - target) / (6 * 3), rtol=1e-4, atol=1e-6)


def test_init_refuses_a_classifier_head_and_a_wrong_width():
  phi = sea.fit_phi(np.random.default_rng(0).normal(size=(20, 8)), 3)
  io = _io(np.zeros((2, 3)), np.zeros((2, 8)), phi)
  sea.SEA(dim=3).init(jax.random.key(0), io)
  with pytest.raises(ValueError, match="num_classes=None"):
    headed = dataclasses.replace(io, student={**io.student, "logits": jnp.zeros((2, 3))})
    sea.SEA(dim=3).init(jax.random.key(0), headed)
  with pytest.raises(ValueError, match="the student's 4"):
    wide = dataclasses.replace(io, student={"embedding": jnp.zeros((2, 4)), "logits": None})
    sea.SEA(dim=3).init(jax.random.key(0), wide)
  with pytest.raises(ValueError, match="sampling"):
    sea.SEA(sampling="umap")


# ------------------------------------------------------------------------------------------------
# Loudness.


def test_a_weighting_matches_iec_61672_at_standard_frequencies():
  # IEC 61672-1 Table 3 (A-weighting, dB; nominal frequencies, design-goal values).
  table = {31.5: -39.4, 100.0: -19.1, 250.0: -8.6, 1000.0: 0.0, 4000.0: 1.0, 10000.0: -2.5}
  got = np.asarray(loudness.a_weighting_db(np.array(list(table))))
  np.testing.assert_allclose(got, list(table.values()), atol=0.15)
  t = np.arange(48000) / 48000
  levels = loudness.a_weighted_leq(
      np.stack([np.sin(2 * np.pi * f * t) for f in (1000, 100, 10000)]), 48000
  )
  np.testing.assert_allclose(levels, [0.0, -19.14, -2.49], atol=0.02)  # full-scale sines, dBFS
  quieter = loudness.a_weighted_leq(0.1 * np.sin(2 * np.pi * 1000 * t), 48000)
  np.testing.assert_allclose(quieter, -20.0, atol=1e-3)
  assert float(loudness.a_weighted_leq(np.zeros(64), RATE)) == -120.0


# ------------------------------------------------------------------------------------------------
# Sampling strategies.


def test_random_sampling_is_uniform_without_replacement():
  rng = np.random.default_rng(0)
  counts = np.zeros(10)
  for _ in range(3000):
    picked = sea_sampling.sample_random(10, 3, rng)
    assert len(np.unique(picked)) == 3
    counts[picked] += 1
  np.testing.assert_allclose(counts / 3000, 0.3, atol=0.03)  # k/N each


def test_loudness_relevance_is_the_windowed_rank():
  level = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 4.0])
  got = sea_sampling.loudness_relevance(level, 3)
  # Windows {0,1}, {0,1,2}, {1,2,3}, {2,3,4}, {3,4,5}, {4,5}; ties take the average rank.
  np.testing.assert_allclose(got, [1 / 2, 3 / 3, 1 / 3, 3 / 3, 1.5 / 3, 1.5 / 2])


def test_loudness_sampling_favours_loud_windows():
  level = np.where(np.arange(200) % 2 == 0, -10.0, -60.0)  # loud and quiet windows alternate
  rng = np.random.default_rng(0)
  loud = lambda picked: np.mean(level[picked] == -10.0)
  spl = np.mean([loud(sea_sampling.sample_loudness(level, 10, 20, rng)) for _ in range(300)])
  uniform = np.mean([loud(sea_sampling.sample_random(200, 10, rng)) for _ in range(300)])
  assert spl > 0.7 and abs(uniform - 0.5) < 0.05  # relevance 0.75 vs 0.25 per window


def _exact_k_dpp(kernel, k):
  subsets = list(itertools.combinations(range(len(kernel)), k))
  weights = np.array([np.linalg.det(kernel[np.ix_(s, s)]) for s in subsets])
  return subsets, weights / weights.sum()


@pytest.mark.parametrize("sampler, draws, tolerance", [("exact", 3000, 0.05), ("mcmc", 800, 0.1)])
def test_k_dpp_sampler_matches_exact_subset_probabilities(sampler, draws, tolerance):
  rng = np.random.default_rng(0)
  embeddings = rng.random((5, 3))
  quality = np.array([1.0, 0.2, 0.6, 0.9, 0.4])
  kernel = sea_sampling.dpp_kernel(embeddings, quality, regularization=0.1)
  f = embeddings / embeddings.sum(axis=1, keepdims=True)  # L1 rows (non-negative here)
  np.testing.assert_allclose(kernel, np.outer(quality, quality) * (f @ f.T) + 0.1 * np.eye(5))
  subsets, probabilities = _exact_k_dpp(kernel, 2)
  counts = dict.fromkeys(subsets, 0)
  for _ in range(draws):
    picked = tuple(sea_sampling.sample_k_dpp(kernel, 2, rng, sampler=sampler, mcmc_iterations=25))
    counts[picked] += 1
  empirical = np.array([counts[s] for s in subsets]) / draws
  assert 0.5 * np.abs(empirical - probabilities).sum() < tolerance  # total variation


def test_dpp_picks_diverse_points_among_duplicates():
  rng = np.random.default_rng(0)
  distinct = np.eye(8) + 0.1 * rng.random((8, 8))  # non-negative, well spread directions
  pool = np.repeat(distinct, 5, axis=0)  # every point five times
  source = np.repeat(np.arange(8), 5)
  for _ in range(10):  # a near-singular L: a duplicate pair has det ≈ 0
    picked = sea_sampling.select(
        "dpp_div", 8, seed=int(rng.integers(1e6)), embeddings=pool, regularization=1e-6
    )
    assert len(set(source[picked])) == 8
  seeds = range(40)
  dpp = [
      len(set(source[sea_sampling.select("dpp_div", 6, seed=s, embeddings=pool)])) for s in seeds
  ]
  uniform = [
      len(set(source[sea_sampling.select("random", 6, seed=s, embeddings=pool)])) for s in seeds
  ]
  assert np.mean(dpp) > np.mean(uniform) + 0.3


def test_dpp_chunks_share_k_in_proportion():
  assert sea_sampling.chunk_sizes(10, 4, 4) == [(0, 4, 2), (4, 8, 1), (8, 10, 1)]
  level = np.arange(30.0)
  picked = sea_sampling.select(
      "dpp",
      6,
      seed=0,
      embeddings=np.random.default_rng(0).random((30, 4)),
      loudness=level,
      loudness_window=5,
      chunk=10,
  )
  assert len(picked) == 6 and [np.sum(picked // 10 == c) for c in range(3)] == [2, 2, 2]
  with pytest.raises(ValueError, match="needs one loudness"):
    sea_sampling.select("loudness", 3, seed=0, embeddings=np.zeros((30, 4)))


# ------------------------------------------------------------------------------------------------
# prepare on synthetic audio, then the real trainer.

NUM_SAMPLES = 1600  # 0.2 s at 8 kHz
TINY_MEL = audio.MelConfig(sample_rate=RATE, n_fft=256, hop_length=64, n_mels=16)


def tiny_audio_net(num_classes=None, filters=(4, 4, 4, 8), **kwargs):
  """An L3-shaped network small enough for a test (16 mel bands, 4–8 channels)."""
  return audio.L3AudioNet(filters=tuple(filters), mel=TINY_MEL, num_classes=num_classes, **kwargs)


def _clips(count, seed):
  """Sines of 3 frequencies (the label) at gains from −40 to 0 dB, plus a little noise."""
  rng = np.random.default_rng(seed)
  t = np.arange(NUM_SAMPLES) / RATE
  out = []
  for i in range(count):
    label = i % 3
    gain = 10 ** (rng.uniform(-40, 0) / 20)
    wave = gain * np.sin(2 * np.pi * (300 + 700 * label) * t + rng.uniform(0, 6))
    wave += 1e-3 * rng.normal(size=NUM_SAMPLES)
    out.append(
        {
            "audio": wave.astype(np.float32),
            "sample_rate": np.int32(RATE),
            "label": np.int32(label),
            "fold": np.int32((i // 3) % 3),
        }
    )
  return out


def tiny_audio(split, *, data_dir=None, manual_dir=None):
  del data_dir, manual_dir
  return _clips({"train": 48, "validation": 12, "test": 36}[split], seed=len(split))


def test_prepare_computes_loudness_from_the_waveform_and_samples_loud_clips():
  clips = tiny_audio("train")
  waves = np.stack([c["audio"] for c in clips])
  teacher_embeddings = np.random.default_rng(0).normal(size=(len(clips), 6)).astype(np.float32)

  def batches(split):
    for start in range(0, len(clips), 20):
      index = np.arange(start, start + 20)
      mask = index < len(clips)
      index = np.where(mask, index, 0)
      yield {
          "index": index,
          "audio": waves[index],
          "mask": mask,
          "sample_rate": np.full(20, RATE, np.int32),
      }

  ctx = prepare.make_context(
      context=CONTEXT,
      roles={"train": "train"},
      batches=batches,
      teacher_outputs=lambda b: ({"embedding": jnp.asarray(teacher_embeddings)[b["index"]]},),
      model_input=lambda b: b["audio"],
  )
  levels = np.asarray(loudness.a_weighted_leq(waves, RATE))
  method = sea.SEA(dim=2, sampling="loudness", sample_size=12, loudness_window=48)
  constants = method.prepare(ctx)
  picked = constants["sample_indices"]
  assert len(np.unique(picked)) == 12
  assert np.median(levels[picked]) > np.median(levels)  # loud clips are favoured
  np.testing.assert_allclose(
      sea.apply_phi(constants, teacher_embeddings),
      sea.apply_phi(sea.fit_phi(teacher_embeddings[picked], 2), teacher_embeddings),
      atol=1e-5,
  )
  identity = sea.SEA(dim=0).prepare(ctx)
  np.testing.assert_array_equal(identity["components"], np.eye(6))
  assert identity["sample_indices"].size == 0


def _config(**overrides):
  c = config_lib.default_config()
  c.dataset = "tests.methods.test_sea:tiny_audio"
  c.input_key = "audio"
  c.num_classes = 3
  c.batch_size = 8
  c.eval_batch_size = 16
  c.progress_bar = False
  c.log_every = 1
  c.optimizer.name, c.optimizer.learning_rate, c.optimizer.schedule = "adam", 1e-3, "constant"
  for key, value in overrides.items():
    c[key] = value
  return c


@pytest.mark.slow
def test_sea_trains_through_the_engine_with_selection_and_downstream_cv(tmp_path):
  teacher = _config(
      model="tests.methods.test_sea:tiny_audio_net", total_steps=2, checkpoint_every=2
  )
  teacher.method = ml_collections.ConfigDict({"name": "supervised"})
  loop.train_and_evaluate(teacher, str(tmp_path / "teacher"))

  student = _config(
      model="tests.methods.test_sea:tiny_audio_net",
      total_steps=6,
      checkpoint_every=6,
      validation_split="validation",
      eval_every=2,
  )
  student.model_kwargs = ml_collections.ConfigDict({"num_classes": None, "filters": (4, 4, 4, 4)})
  student.method = ml_collections.ConfigDict(
      {
          "name": "kd_jax.methods.sea:SEA",
          "dim": 4,
          "sampling": "dpp",
          "sample_size": 16,
          "loudness_window": 16,
          "dpp_chunk": 24,
      }
  )
  student.teachers = (
      ml_collections.ConfigDict(
          {"model": "tests.methods.test_sea:tiny_audio_net", "workdir": str(tmp_path / "teacher")}
      ),
  )
  student.evals = ml_collections.ConfigDict(
      {
          "val": {"kind": "metrics", "split": "validation", "every": 2},
          "downstream": {
              "kind": "kd_jax.evaluators.downstream:Downstream",
              "split": "test",
              "window_samples": 800,
              "regularization": 1.0,
          },
      }
  )
  student.model_selection = ml_collections.ConfigDict(
      dict(evaluator="val", metric="embedding_mse", mode="min", patience=5)
  )
  workdir = tmp_path / "student"
  results = loop.train_and_evaluate(student, str(workdir))

  manifest = json.loads((workdir / "constants" / "manifest.json").read_text())
  assert manifest["arrays"]["components"]["shape"] == [4, 8]
  assert manifest["arrays"]["sample_indices"]["shape"] == [16]
  assert os.path.exists(workdir / "best" / "selection.json")
  flat = json.dumps(results)
  assert "embedding_mse" in flat and "accuracy_mean" in flat
  assert "accuracy_fold_2" in flat


def test_learning_rate_drops_after_a_plateau_of_epoch_losses():
  import optax  # pylint: disable=g-import-not-at-top

  context = base.RunContext(
      total_steps=100, steps_per_epoch=2, num_train_examples=8, batch_size=4, num_classes=1
  )
  tx = optax.with_extra_args_support(
      sea.SEA(plateau_patience=2, plateau_factor=0.1).optimizer(optax.sgd(1.0), context)
  )
  params = {"w": jnp.ones(3)}
  state = tx.init(params)
  sizes = []
  for _ in range(10):  # the loss never improves: after 2 flat epochs each step is ×0.1
    updates, state = tx.update({"w": jnp.ones(3)}, state, params, value=jnp.asarray(1.0))
    sizes.append(float(jnp.abs(updates["w"][0])))
  # Epoch 1 sets the best value, epochs 2–3 are flat: the reduction acts from step 5 (epoch 3's
  # last update), and again after two more flat epochs.
  np.testing.assert_allclose(sizes, [1.0] * 5 + [0.1] * 4 + [0.01], rtol=1e-6)
  assert sea.SEA(plateau_patience=0).optimizer(optax.sgd(1.0), context) is not None
