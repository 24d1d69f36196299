"""ReAugKD inference: the student retrieves from the knowledge base and mixes soft labels.

p(y|x) = β·Σ_j softmax_j(s·t_j/τ_s)·y_j + (1−β)·σ(z_S(x)) over the top-k KB entries of the
student embedding s (`kd_jax.methods.reaugkd`). On the validation split the evaluator reports the
accuracy for every β of the grid and the best β (`best_beta`, the smallest among ties); on the
test split, with `select_on` naming the validation evaluator, it applies that β (`accuracy`) — β
is never chosen on the split it is reported on. Optionally it also measures ScaNN's recall@k
against exact search for the split's own queries (the queries ReAugKD really issues), the
accuracy with ScaNN as the backend, and the latency overhead of retrieval at inference.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from kd_jax import retrieval
from kd_jax.evaluators.base import EvalRun
from kd_jax.methods import reaugkd
from kd_jax.train import prepare


def _median_seconds(fn, *args, repeats: int = 30) -> float:
  jax.block_until_ready(fn(*args))  # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times))


@dataclasses.dataclass
class RetrievalAugmented:
  """Kind "retrieval_augmented" (needs a ReAugKD run: its KB constants and student map).

  Attributes:
    betas: the grid of β reported (0 = the student alone).
    select_on: name of an earlier evaluator (on the validation split) whose `best_beta` is
      applied here; empty on the validation evaluator itself.
    scann: also search with ScaNN (recall@k against exact search, accuracy at the chosen β).
    scann_num_leaves, scann_leaves_to_search, scann_reorder: ScaNN's settings (0 leaves: ≈ √N;
      0 leaves to search: a quarter of the leaves).
    scann_min_recall: the evaluation fails when ScaNN's recall@k against exact search is lower:
      below it, the "accuracy with ScaNN" measures the index settings, not the method.
    latency_batch_sizes: batch sizes at which the inference latency of the student alone and
      with retrieval is timed (median of 30 jitted calls); empty: not timed.
  """

  betas: tuple = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
  select_on: str = ""
  scann: bool = False
  scann_num_leaves: int = 0
  scann_leaves_to_search: int = 0
  scann_reorder: int = 100
  scann_min_recall: float = 0.9
  latency_batch_sizes: tuple = ()

  def __post_init__(self):
    self.betas = tuple(float(b) for b in self.betas)
    if not self.betas or any(not 0.0 <= b <= 1.0 for b in self.betas):
      raise ValueError(
          f"retrieval_augmented: betas must be a non-empty grid in [0, 1], got " f"{self.betas}."
      )
    if not 0.0 <= self.scann_min_recall <= 1.0:
      raise ValueError(
          f"retrieval_augmented: scann_min_recall must be in [0, 1], got {self.scann_min_recall}."
      )
    if 0.0 not in self.betas:
      self.betas = (0.0,) + self.betas  # the student alone is always reported
    self.latency_batch_sizes = tuple(int(b) for b in self.latency_batch_sizes)
    self._outputs = None

  def _student_outputs(self, run: EvalRun):
    """jit(batch -> logits, s) once per run (the evaluator object lives for the whole run)."""
    if self._outputs is None:
      method = run.method
      forward, input_key = run.forward, run.input_key
      from kd_jax.train import forward as forward_lib  # pylint: disable=g-import-not-at-top  (import cycle)

      @jax.jit
      def outputs(variables, method_params, batch):
        variables = dict(variables)
        out = forward.student_eval(
            variables.pop("params"),
            variables,
            forward_lib.model_input(batch, input_key, forward.compute_dtype),
        )
        return {"logits": out["logits"], "embedding": method.student_embedding(method_params, out)}

      self._outputs = outputs
    return self._outputs

  def __call__(self, run: EvalRun) -> dict[str, float]:
    method = run.method
    if not isinstance(method, reaugkd.ReAugKD):
      raise ValueError(
          f"evaluator {run.name!r} (retrieval_augmented) needs a reaugkd run, got "
          f"{type(method).__name__}."
      )
    kb_embeddings = run.constants["kb_embeddings"]
    kb_soft_labels = run.constants["kb_soft_labels"]
    k, temperature = method.num_neighbors, method.student_temperature
    outputs = self._student_outputs(run)
    variables, method_params = run.student_variables(), run.state.params["method"]
    split = prepare.map_batches(
        lambda batch: {**outputs(variables, method_params, batch), "label": batch["label"]},
        run.all_batches(),
        description=f"{run.name}: student outputs",
    )
    z, s, y = (jnp.asarray(split["logits"]), jnp.asarray(split["embedding"]), split["label"])
    selected = None
    if self.select_on:
      selected = float(
          run.result_of(
              self.select_on, "best_beta", wanted_by="β is chosen on the validation split"
          )
      )
    # One pass over the grid, plus the selected β when the grid of this split lacks it.
    betas = self.betas + (() if selected is None or selected in self.betas else (selected,))
    probs = jax.jit(
        functools.partial(reaugkd.retrieval_augmented_probs, k=k, temperature=temperature)
    )(z, s, kb_embeddings, kb_soft_labels, beta=jnp.asarray(betas))
    by_beta = dict(zip(betas, np.mean(np.argmax(np.asarray(probs), -1) == y[None], axis=1)))
    result = {f"accuracy_beta{b:.2f}": float(by_beta[b]) for b in self.betas}
    result["accuracy_no_retrieval"] = float(by_beta[0.0])
    # First maximum: the smallest β among ties.
    result["best_beta"] = self.betas[int(np.argmax([by_beta[b] for b in self.betas]))]
    if selected is not None:
      beta = result["beta"] = selected
      result["accuracy"] = float(by_beta[selected])
    else:
      beta = result["best_beta"]
    result["kb_size"] = int(kb_embeddings.shape[0])
    result["k"] = k
    if self.scann:
      result.update(
          self._scann(
              np.asarray(s),
              z,
              y,
              kb_embeddings,
              kb_soft_labels,
              k=k,
              temperature=temperature,
              beta=beta,
          )
      )
    for size in self.latency_batch_sizes:
      result.update(self._latency(run, outputs, variables, method_params, size, beta))
    return result

  def _scann(self, queries, z, y, kb_embeddings, kb_soft_labels, *, k, temperature, beta):
    database = np.asarray(kb_embeddings)
    leaves = self.scann_num_leaves or max(1, int(round(np.sqrt(database.shape[0]))))
    params = retrieval.ScannParams(
        num_leaves=leaves,
        num_leaves_to_search=self.scann_leaves_to_search or max(1, leaves // 4),
        reorder=self.scann_reorder,
    )
    scann = retrieval.ScannSearcher(database, default_k=k, params=params)
    approx, scores = scann.search(queries, k)
    exact, _ = retrieval.ExactSearcher(database).search(queries, k)
    probs = reaugkd.mix_retrieved(
        z,
        jnp.asarray(scores),
        kb_soft_labels[jnp.asarray(approx)],
        temperature=temperature,
        beta=beta,
    )
    recall = float(retrieval.recall_at_k(approx, exact))
    if recall < self.scann_min_recall:
      raise ValueError(
          f"retrieval_augmented: ScaNN's recall@{k} is {recall:.3f} against exact search, below "
          f"scann_min_recall={self.scann_min_recall} ({params.num_leaves} leaves, "
          f"{params.num_leaves_to_search} searched, reorder {params.reorder}, "
          f"{database.shape[0]} entries); search more leaves (scann_leaves_to_search) or "
          "reorder more (scann_reorder)."
      )
    return {
        "scann_recall": recall,
        "scann_accuracy": float(np.mean(np.argmax(np.asarray(probs), -1) == y)),
    }

  def _latency(self, run: EvalRun, outputs, variables, method_params, size: int, beta: float):
    """Student alone vs student + exact top-k + mixing, jitted, on `size` examples."""
    batch = prepare.numeric(next(iter(run.all_batches())))
    batch = {key: value[:size] for key, value in batch.items()}
    if batch["mask"].shape[0] < size:
      return {}
    kb_embeddings = run.constants["kb_embeddings"]
    kb_soft_labels = run.constants["kb_soft_labels"]
    method = run.method

    @jax.jit
    def student_only(batch):
      return jax.nn.softmax(outputs(variables, method_params, batch)["logits"], axis=-1)

    @jax.jit
    def with_retrieval(batch):
      out = outputs(variables, method_params, batch)
      return reaugkd.retrieval_augmented_probs(
          out["logits"],
          out["embedding"],
          kb_embeddings,
          kb_soft_labels,
          k=method.num_neighbors,
          temperature=method.student_temperature,
          beta=beta,
      )

    plain = _median_seconds(student_only, batch)
    augmented = _median_seconds(with_retrieval, batch)
    return {
        f"latency_b{size}_student_ms": 1e3 * plain,
        f"latency_b{size}_reaugkd_ms": 1e3 * augmented,
        f"latency_b{size}_overhead": augmented / plain - 1.0,
    }
