"""1-nearest-neighbour accuracy on frozen student embeddings (CompRess's NN evaluation, §5).

The train split's embeddings are the database, each example of the evaluator's split a query;
similarity is the cosine (both sides L2-normalised), the search exact (`kd_jax.retrieval.
exact_top_k` in float32 precision: the chunked matmul + top-k of the project's retrieval code,
where CompRess used FAISS), and a query is correct when its nearest train example has its label.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax import retrieval
from kd_jax.evaluators.base import EvalRun
from kd_jax.evaluators.linear_probe import split_embeddings
from kd_jax.losses.relational import l2_normalize


def nearest_neighbour_accuracy(
    database_features, database_labels, query_features, query_labels
) -> float:
  """Fraction of queries whose most cosine-similar database row has the query's label.

  Ties in similarity go to the lower database index (`lax.top_k` order).
  """
  database = retrieval.ExactSearcher(np.asarray(database_features, np.float32)).database
  queries = jnp.asarray(query_features, jnp.float32)
  if queries.shape[0] == 0:
    raise ValueError("nearest_neighbour_accuracy: no queries.")
  indices, _ = retrieval.exact_top_k(
      l2_normalize(queries), database, k=1, precision=jax.lax.Precision.HIGHEST
  )
  predicted = np.asarray(database_labels)[np.asarray(indices)[:, 0]]
  return float(np.mean(predicted == np.asarray(query_labels)))


@dataclasses.dataclass
class NearestNeighbour:
  """Whole-split evaluator "kd_jax.evaluators.nearest_neighbour:NearestNeighbour".

  Attributes:
    database_split: the split searched (the train split; never the evaluator's own split, where
      every query would find itself).
    output: the student output compared.
  """

  database_split: str = "train"
  output: str = "embedding"

  def __call__(self, run: EvalRun) -> dict[str, float]:
    if run.split == self.database_split:
      raise ValueError(
          f"evaluator {run.name!r}: the queries' split {run.split!r} is the database; every "
          "query would find itself."
      )
    database, database_labels = split_embeddings(run, self.database_split, self.output)
    queries, labels = split_embeddings(run, run.split, self.output)
    return {
        "accuracy": nearest_neighbour_accuracy(database, database_labels, queries, labels),
        "database_size": int(database.shape[0]),
    }
