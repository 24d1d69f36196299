"""Downstream cross-validation (SEA's evaluation) on data whose scores are known in advance."""

import types

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax.evaluators import downstream
from kd_jax.evaluators.base import EvalRun
from kd_jax.methods import base


def _clusters(classes=3, per_class_per_fold=4, folds=10, dim=4, seed=0):
  """Well-separated Gaussian clusters (one per class), every class in every fold."""
  rng = np.random.default_rng(seed)
  centres = 10.0 * np.eye(classes, dim)
  labels = np.tile(np.repeat(np.arange(classes), per_class_per_fold), folds)
  fold = np.repeat(np.arange(folds), classes * per_class_per_fold)
  features = centres[labels] + rng.normal(scale=0.2, size=(len(labels), dim))
  return features, labels, fold


def test_one_mislabelled_fold_gives_the_known_mean_and_std():
  features, labels, folds = _clusters()
  # Fold 2's labels are shifted by one class: the other folds outvote it when it is in the
  # training set (8 against 1), and when it is held out every prediction is wrong.
  labels = np.where(folds == 2, (labels + 1) % 3, labels)
  result = downstream.cross_validate(features, labels, folds, regularization=1.0, max_iter=500)
  assert [result[f"accuracy_fold_{f}"] for f in range(10)] == [1.0] * 2 + [0.0] + [1.0] * 7
  assert result["accuracy_mean"] == pytest.approx(0.9)
  assert result["accuracy_std"] == pytest.approx(0.3)  # np.std of nine 1s and one 0
  assert result["folds"] == 10 and result["examples"] == len(labels)


def test_mlp_classifier_separates_clusters_in_every_fold():
  features, labels, folds = _clusters(folds=4)
  result = downstream.cross_validate(
      features,
      labels,
      folds,
      classifier="mlp",
      hidden=(16,),
      alpha=1e-4,
      batch_size=16,
      learning_rate=1e-2,
      epochs=200,
  )
  assert result["accuracy_mean"] == 1.0 and result["accuracy_std"] == 0.0


def test_fixed_train_and_held_out_folds_follow_the_official_protocol():
  features, labels, folds = _clusters(folds=3)
  names = np.array(["train", "validate", "test"])[folds]
  # The "test" fold is mislabelled: it must be used neither for training nor for scoring.
  labels = np.where(names == "test", (labels + 1) % 3, labels)
  result = downstream.cross_validate(
      features,
      labels,
      names,
      train_folds=("train",),
      held_out_folds=("validate",),
      regularization=1.0,
      max_iter=500,
  )
  assert result["accuracy_fold_validate"] == 1.0 and result["folds"] == 1
  assert "accuracy_fold_test" not in result
  with pytest.raises(ValueError, match="not usable"):
    downstream.cross_validate(features, labels, names, held_out_folds=("fold9",))


def test_multilabel_auprc_is_one_when_separable_and_skips_absent_classes():
  rng = np.random.default_rng(1)
  n, classes = 120, 3
  targets = (rng.random((n, classes)) < 0.4).astype(np.int32)
  folds = np.arange(n) % 4
  targets[folds == 1, 2] = 0  # class 2 has no positive in fold 1: left out of its macro AUPRC
  features = 4.0 * (2 * targets - 1) + rng.normal(scale=0.3, size=(n, classes))
  result = downstream.cross_validate(
      features, targets, folds, multilabel=True, regularization=1.0, max_iter=500
  )
  for fold in range(4):
    assert result[f"micro_auprc_fold_{fold}"] == pytest.approx(1.0)
    assert result[f"macro_auprc_fold_{fold}"] == pytest.approx(1.0)
  assert result["micro_auprc_mean"] == pytest.approx(1.0)
  assert result["macro_auprc_std"] == pytest.approx(0.0)
  # Uninformative features: AUPRC falls to about the positive rate, far from 1.
  noise = rng.normal(size=(n, classes))
  chance = downstream.cross_validate(
      noise, targets, folds, multilabel=True, regularization=1.0, max_iter=500
  )
  assert chance["micro_auprc_mean"] < 0.75
  with pytest.raises(ValueError, match="labels \\[N, C\\]"):
    downstream.cross_validate(features, targets[:, 0], folds, multilabel=True)


def test_windows_are_framed_and_averaged_with_their_mask():
  x = jnp.arange(2 * 10, dtype=jnp.float32).reshape(2, 10)
  windows = downstream.frame(x, window=4, hop=3)
  np.testing.assert_array_equal(windows[0], [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])
  assert downstream.frame(x[:, :3], window=4, hop=4).shape == (2, 1, 4)  # zero-padded
  kernel = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5)), jnp.float32)
  embed = lambda w: w @ kernel  # linear: the mean of embeddings is the embedding of the mean
  mean = downstream.aggregate_windows(embed, windows)
  np.testing.assert_allclose(mean, windows.mean(axis=1) @ kernel, rtol=1e-5)
  mask = jnp.array([[True, True, False], [True, False, False]])
  masked = downstream.aggregate_windows(embed, windows, mask)
  np.testing.assert_allclose(masked[0], windows[0, :2].mean(axis=0) @ kernel, rtol=1e-5)
  np.testing.assert_allclose(masked[1], windows[1, 0] @ kernel, rtol=1e-5)
  biggest = downstream.aggregate_windows(embed, windows, mask, "max")
  np.testing.assert_allclose(biggest[0], np.max(windows[0, :2] @ kernel, axis=0), rtol=1e-5)


class _FirstSamples(nn.Module):
  """Embedding = the first 3 samples of each (window of a) clip: a known, frozen "student"."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    scale = self.param("scale", nn.initializers.ones, ())
    return {"embedding": scale * x[:, :3], "logits": None}


def test_evaluator_embeds_clips_by_windows_and_reads_string_folds():
  rng = np.random.default_rng(0)
  n, batch_size, window = 30, 8, 5
  labels = np.arange(n) % 3
  # Each clip holds 4 windows; only the first 3 samples of a window reach the embedding, and
  # their mean over windows is the class id (plus window noise that averages to zero).
  noise = rng.normal(scale=0.2, size=(n, 4, 1))
  noise -= noise.mean(axis=1, keepdims=True)
  clips = (labels[:, None, None] + noise + np.zeros((n, 4, window))).reshape(n, 4 * window)
  folds = np.array([f"f{(i // 3) % 3}".encode() for i in range(n)])  # every class in each

  def batches():
    for start in range(0, n, batch_size):
      index = np.arange(start, start + batch_size)
      mask = index < n
      index = np.where(mask, index, 0)
      yield {
          "audio": clips[index].astype(np.float32),
          "label": labels[index],
          "fold": folds[index],
          "mask": mask,
      }

  module = _FirstSamples()
  params = module.init({"params": np.zeros(2, np.uint32)}, jnp.zeros((1, 5)), train=False)
  run = EvalRun(
      name="downstream",
      split="test",
      step=0,
      batches=batches,
      all_batches=batches,
      split_batches=None,
      teacher_variables=(),
      constants={},
      method=None,
      mesh=None,
      state=types.SimpleNamespace(params={"student": params["params"]}, model_state={}),
      forward=types.SimpleNamespace(student=module, compute_dtype=jnp.float32),
      context=base.RunContext(10, 1, n, batch_size, 3),
      input_key="audio",
      eval_step=None,
  )
  evaluator = downstream.Downstream(window_samples=window, regularization=10.0)
  features, got_labels, got_folds = evaluator.clip_embeddings(run)
  assert features.shape == (n, 3)
  np.testing.assert_allclose(features, np.repeat(labels[:, None], 3, axis=1), atol=1e-5)
  np.testing.assert_array_equal(got_labels, labels)
  assert list(got_folds[:4]) == ["f0", "f0", "f0", "f1"]
  result = evaluator(run)
  assert result["accuracy_mean"] == 1.0 and result["folds"] == 3
  with pytest.raises(ValueError, match="classifier"):
    downstream.Downstream(classifier="svm")
