"""Cluster alignment (CompRess's CA evaluation, PAPERS.md §5): how well k-means clusters of the
frozen student embeddings line up with the classes.

k-means (scikit-learn, k = the number of classes unless set) is fitted on the L2-normalised
embeddings of the fit split (the train split, as in CompRess); every cluster is matched to one
class by the Hungarian algorithm (`scipy.optimize.linear_sum_assignment`) maximising the number
of fit-split examples whose cluster maps to their class, and the accuracy of that assignment is
reported on the evaluator's split (its examples are assigned to the nearest centroid). With
`fit_split=""` the clusters are fitted and matched on the evaluator's split itself.

CompRess's code matches with the cost −|cluster ∩ class| / |cluster| (precision per cluster);
the count used here is the cost whose optimum *is* the best matched accuracy on the fit split.
With more clusters than classes, the extra clusters stay unmatched and count as errors (and
vice versa), as with any one-to-one matching.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import optimize
from sklearn import cluster

from kd_jax.evaluators.base import EvalRun
from kd_jax.evaluators.linear_probe import l2_normalize, split_embeddings


def match_clusters(cluster_ids, labels, num_clusters: int, num_classes: int) -> np.ndarray:
  """[num_clusters] class of each cluster (−1: unmatched), maximising Σ_c |cluster c ∩ class m(c)|."""
  cluster_ids, labels = np.asarray(cluster_ids), np.asarray(labels)
  counts = np.zeros((num_clusters, num_classes), np.int64)
  np.add.at(counts, (cluster_ids, labels), 1)
  rows, cols = optimize.linear_sum_assignment(counts, maximize=True)
  mapping = np.full(num_clusters, -1, np.int64)
  mapping[rows] = cols
  return mapping


def matched_accuracy(cluster_ids, labels, mapping) -> float:
  """Fraction of examples whose cluster is matched to their label."""
  return float(np.mean(np.asarray(mapping)[np.asarray(cluster_ids)] == np.asarray(labels)))


def cluster_alignment(
    fit: tuple,
    evaluate: tuple,
    *,
    num_classes: int,
    num_clusters: int = 0,
    n_init: int = 1,
    max_iter: int = 100,
    seed: int = 0,
) -> dict[str, float]:
  """k-means on `fit` = (features, labels), Hungarian matching on it, accuracy on `evaluate`."""
  k = num_clusters or num_classes
  fit_x = l2_normalize(np.asarray(fit[0], np.float64))
  if fit_x.shape[0] < k:
    raise ValueError(f"cluster_alignment: {fit_x.shape[0]} examples cannot form {k} clusters.")
  kmeans = cluster.KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=seed)
  fit_ids = kmeans.fit_predict(fit_x)
  mapping = match_clusters(fit_ids, fit[1], k, num_classes)
  eval_ids = kmeans.predict(l2_normalize(np.asarray(evaluate[0], np.float64)))
  return {
      "accuracy": matched_accuracy(eval_ids, evaluate[1], mapping),
      "fit_accuracy": matched_accuracy(fit_ids, fit[1], mapping),
      "clusters": k,
  }


@dataclasses.dataclass
class ClusterAlignment:
  """Whole-split evaluator "kd_jax.evaluators.cluster_alignment:ClusterAlignment".

  Attributes:
    fit_split: where k-means is fitted and clusters matched to classes ("": the evaluator's own
      split).
    num_clusters: k (0: the number of classes of the run).
    n_init, max_iter: scikit-learn KMeans settings (k-means++ seeding, seeded by the run's seed).
    output: the student output clustered.
  """

  fit_split: str = "train"
  num_clusters: int = 0
  n_init: int = 1
  max_iter: int = 100
  output: str = "embedding"

  def __post_init__(self):
    if self.num_clusters < 0 or self.n_init < 1 or self.max_iter < 1:
      raise ValueError("cluster_alignment: num_clusters >= 0, n_init >= 1 and max_iter >= 1.")

  def __call__(self, run: EvalRun) -> dict[str, float]:
    evaluate = split_embeddings(run, run.split, self.output)
    fit_split = self.fit_split or run.split
    fit = evaluate if fit_split == run.split else split_embeddings(run, fit_split, self.output)
    return cluster_alignment(
        fit,
        evaluate,
        num_classes=run.context.num_classes,
        num_clusters=self.num_clusters,
        n_init=self.n_init,
        max_iter=self.max_iter,
        seed=run.context.seed,
    )
