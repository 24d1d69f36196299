"""The whole-split evaluators on frozen embeddings (linear probe, 1-NN, cluster alignment) on data
whose answer is known, called directly and through the `EvalRun` interface the trainer uses."""

import types

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax import evaluators
from kd_jax.evaluators import cluster_alignment as ca
from kd_jax.evaluators import linear_probe as lp
from kd_jax.evaluators import nearest_neighbour as nn_eval
from kd_jax.methods import base

CLASSES, DIM = 4, 8
SIZES = {"train": 80, "validation": 40, "test": 44}


def blobs(split, noise=0.3):
  """Well-separated classes: class c around 5·e_c (+ noise), classes in a fixed shuffled order."""
  rng = np.random.default_rng({"train": 0, "validation": 1, "test": 2}[split])
  labels = rng.permutation(np.arange(SIZES[split]) % CLASSES)
  features = 5.0 * np.eye(DIM)[labels] + noise * rng.normal(size=(SIZES[split], DIM))
  return features.astype(np.float32), labels


# ------------------------------------------------------------------------------------------------
# Cluster alignment.


def test_hungarian_matching_undoes_a_permutation_of_cluster_ids():
  labels = np.repeat(np.arange(5), 7)
  permutation = np.array([3, 0, 4, 1, 2])
  cluster_ids = permutation[labels]
  mapping = ca.match_clusters(cluster_ids, labels, 5, 5)
  np.testing.assert_array_equal(mapping[permutation], np.arange(5))
  assert ca.matched_accuracy(cluster_ids, labels, mapping) == 1.0


def test_hungarian_matching_is_one_to_one_and_optimal():
  # cluster 0 = {1, 1, 2}, cluster 1 = {2, 0}, cluster 2 = {0}: greedy majority would give
  # clusters 0 and 1 ... the optimum is 0→1, 1→2, 2→0: 4 of 6.
  cluster_ids = np.array([0, 0, 0, 1, 1, 2])
  labels = np.array([1, 1, 2, 2, 0, 0])
  mapping = ca.match_clusters(cluster_ids, labels, 3, 3)
  np.testing.assert_array_equal(mapping, [1, 2, 0])
  assert ca.matched_accuracy(cluster_ids, labels, mapping) == pytest.approx(4 / 6)
  # More clusters than classes: the extra cluster stays unmatched and its examples count as wrong.
  mapping = ca.match_clusters(np.array([0, 1, 2, 2]), np.array([0, 0, 1, 1]), 3, 2)
  assert sorted(mapping.tolist()) == [-1, 0, 1]
  assert ca.matched_accuracy(np.array([0, 1, 2, 2]), np.array([0, 0, 1, 1]), mapping) == 0.75


def test_cluster_alignment_of_separated_blobs_is_perfect():
  result = ca.cluster_alignment(
      blobs("train"), blobs("test"), num_classes=CLASSES, n_init=3, seed=0
  )
  assert result == {"accuracy": 1.0, "fit_accuracy": 1.0, "clusters": CLASSES}


# ------------------------------------------------------------------------------------------------
# Nearest neighbour.


def test_nearest_neighbour_uses_cosine_similarity():
  database = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [10.0, 9.0]])
  labels = np.array([0, 1, 2, 3])
  # Nearest by cosine: [100, 1] → row 0 (Euclidean would pick row 3); [0.1, -3] → row 0 is at
  # cos 0.03, row 2 at −0.03, row 1 at −1; [-2, 0.5] → row 2; [1, 1] → row 3 (cos 0.9986).
  queries = np.array([[100.0, 1.0], [0.1, -3.0], [-2.0, 0.5], [1.0, 1.0]])
  truth = np.array([0, 0, 2, 1])  # the last query is "wrong": its neighbour has label 3
  assert nn_eval.nearest_neighbour_accuracy(database, labels, queries, truth) == 0.75


def test_nearest_neighbour_of_separated_blobs_is_perfect():
  assert nn_eval.nearest_neighbour_accuracy(*blobs("train"), *blobs("test")) == 1.0


# ------------------------------------------------------------------------------------------------
# Linear probe.


def test_standardizer_uses_the_normalised_train_statistics():
  train, _ = blobs("train")
  standardized = lp.standardizer(train)(train)
  normalized = train / np.linalg.norm(train, axis=-1, keepdims=True)
  variance = normalized.var(0)
  np.testing.assert_allclose(standardized.mean(0), 0.0, atol=1e-9)
  # BatchNorm's ε = 1e-5 under the root: unit variance up to var / (var + ε).
  np.testing.assert_allclose(standardized.var(0), variance / (variance + 1e-5), rtol=1e-5)
  # Scale-free: features are L2-normalised first.
  np.testing.assert_allclose(
      lp.standardizer(train)(3.0 * train), standardized, rtol=1e-5, atol=1e-6
  )


def test_linear_probe_of_separated_blobs_is_perfect_and_picks_c_on_validation():
  result = lp.linear_probe(
      blobs("train"), blobs("validation"), blobs("test"), regularization=(1e-4, 1.0)
  )
  assert result["accuracy"] == 1.0 and result["train_accuracy"] == 1.0
  scores = [result["validation_accuracy_C0.0001"], result["validation_accuracy_C1"]]
  assert result["validation_accuracy"] == max(scores)
  assert result["regularization"] == (1e-4, 1.0)[int(np.argmax(scores))]


def test_linear_probe_chance_on_random_labels():
  rng = np.random.default_rng(5)
  features = rng.normal(size=(400, DIM))
  result = lp.linear_probe(
      (features[:200], rng.integers(0, 2, 200)),
      None,
      (features[200:], rng.integers(0, 2, 200)),
      regularization=(1.0,),
  )
  assert 0.35 < result["accuracy"] < 0.65


# ------------------------------------------------------------------------------------------------
# Through EvalRun, as the trainer calls them.


class Features(nn.Module):
  """A parameter-free "student" whose embedding is its input."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    return {"embedding": x, "logits": x[:, :CLASSES]}


def _batches(split, batch_size=32):
  features, labels = blobs(split)
  out = []
  for start in range(0, len(labels), batch_size):
    x, y = features[start : start + batch_size], labels[start : start + batch_size]
    pad = batch_size - len(y)
    out.append(
        {
            "image": np.pad(x, ((0, pad), (0, 0))),
            "label": np.pad(y, (0, pad)),
            "mask": np.arange(batch_size) < len(y),
        }
    )
  return out


def _run(split):
  return evaluators.EvalRun(
      name=f"{split}_eval",
      split=split,
      step=0,
      batches=lambda: _batches(split),
      all_batches=lambda: _batches(split),
      split_batches=_batches,
      state=types.SimpleNamespace(params={"student": {}}, model_state={}),
      teacher_variables=(),
      constants={},
      method=None,
      forward=types.SimpleNamespace(student=Features(), compute_dtype=jnp.float32),
      context=base.RunContext(
          total_steps=1,
          steps_per_epoch=1,
          num_train_examples=80,
          batch_size=32,
          num_classes=CLASSES,
      ),
      input_key="image",
      mesh=None,
      eval_step=None,
  )


def test_split_embeddings_drop_padding():
  features, labels = lp.split_embeddings(_run("test"), "test")
  expected_features, expected_labels = blobs("test")
  np.testing.assert_array_equal(features, expected_features)
  np.testing.assert_array_equal(labels, expected_labels)
  train_features, _ = lp.split_embeddings(_run("test"), "train")  # another split
  np.testing.assert_array_equal(train_features, blobs("train")[0])


@pytest.mark.parametrize(
    "kind, options",
    [
        ("kd_jax.evaluators.linear_probe:LinearProbe", {"regularization": (0.1, 1.0)}),
        ("kd_jax.evaluators.nearest_neighbour:NearestNeighbour", {}),
        ("kd_jax.evaluators.cluster_alignment:ClusterAlignment", {"n_init": 3}),
    ],
)
def test_evaluators_through_eval_run(kind, options):
  evaluator = evaluators.get_evaluator(kind, **options)
  assert evaluator(_run("test"))["accuracy"] == 1.0


def test_evaluators_refuse_their_fit_split():
  with pytest.raises(ValueError, match="not evaluated on its train split"):
    lp.LinearProbe()(_run("train"))
  with pytest.raises(ValueError, match="every query would find itself"):
    nn_eval.NearestNeighbour()(_run("train"))
  with pytest.raises(ValueError, match="Unknown option"):
    evaluators.get_evaluator("kd_jax.evaluators.linear_probe:LinearProbe", c=1.0)
  with pytest.raises(ValueError, match="needs a validation split"):
    lp.LinearProbe(validation_split="")(_run("test"))
