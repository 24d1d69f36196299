"""Linear probe on frozen student embeddings (CompRess's linear evaluation, PAPERS.md §5).

Features are the student's "embedding" output in inference mode, L2-normalised, then
standardised with the mean and standard deviation of the *train* split's features — the
"full-train-set BatchNorm statistics" of CompRess (a BatchNorm without affine whose statistics
are those of the whole train set). A multinomial logistic regression (scikit-learn, L-BFGS) is
fitted on the train split for every inverse regularisation strength C of `regularization`;
the C with the best accuracy on the validation split (the first among ties) is applied to the
evaluator's split. C is never chosen on the split it is reported on, unless that split *is* the
validation split. (CompRess trains the linear layer by SGD for 40 epochs; a convex solver with C
chosen on validation replaces its fixed schedule.)

Also here, shared by the nearest-neighbour and cluster-alignment evaluators: `split_batches`
(the batches of any split) and `split_embeddings` (frozen student features of a split).
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import threadpoolctl
from sklearn import exceptions as sklearn_exceptions
from sklearn import linear_model

from kd_jax.evaluators.base import EvalRun
from kd_jax.train import prepare

_EPSILON = 1e-5  # BatchNorm's ε in the standardisation


def split_batches(run: EvalRun, split: str):
  """All batches of `split` (eval transforms, padded, with "mask"), on every host."""
  return run.all_batches() if split == run.split else run.split_batches(split)


def _embedding_fn(module, output: str):
  """jit((variables, x) -> float32 output) of the student module in inference mode."""
  kwargs = {"train": False}
  if "outputs" in inspect.signature(type(module).__call__).parameters:
    kwargs["outputs"] = (output,)

  @jax.jit
  def embed(variables, x):
    out = module.apply(variables, x, **kwargs)
    if output not in out:
      raise ValueError(f"the student returns {sorted(out)}, not {output!r}.")
    return out[output].astype(jnp.float32)

  return embed


_EMBED_CACHE: dict = {}  # (module, output) -> jitted fn: one compilation per run and output


def split_embeddings(run: EvalRun, split: str, output: str = "embedding"):
  """(features [N, d] float32, labels [N] int) of the student on the whole `split`.

  The model is asked for `output` itself (the trainer's forward computes only what the method
  reads, which need not include the embedding).
  """
  from kd_jax.train import forward as forward_lib  # pylint: disable=g-import-not-at-top  (import cycle)

  module = run.forward.student
  key = (id(module), output)
  if key not in _EMBED_CACHE or _EMBED_CACHE[key][0] is not module:
    _EMBED_CACHE.clear()  # one run at a time: do not keep old modules alive
    _EMBED_CACHE[key] = (module, _embedding_fn(module, output))
  embed = _EMBED_CACHE[key][1]
  variables = run.student_variables()
  dtype = run.forward.compute_dtype

  def per_batch(batch):
    x = forward_lib.model_input(batch, run.input_key, dtype)
    return {"features": embed(variables, x), "label": batch["label"]}

  out = prepare.map_batches(
      per_batch, split_batches(run, split), description=f"{run.name}: {split} embeddings"
  )
  features = out["features"].reshape(out["features"].shape[0], -1)
  if not np.all(np.isfinite(features)):
    raise FloatingPointError(f"evaluator {run.name!r}: non-finite embeddings on {split!r}.")
  return features, out["label"]


def l2_normalize(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def standardizer(train_features: np.ndarray):
  """x ↦ (n(x) − μ) / √(σ² + ε) with μ, σ² of the normalised train features n(train)."""
  normalized = l2_normalize(np.asarray(train_features, np.float64))
  mean, variance = normalized.mean(axis=0), normalized.var(axis=0)
  scale = 1.0 / np.sqrt(variance + _EPSILON)
  return lambda x: (l2_normalize(np.asarray(x, np.float64)) - mean) * scale


def linear_probe(
    train: tuple,
    validation: tuple | None,
    evaluate: tuple,
    *,
    regularization=(0.01, 0.1, 1.0, 10.0, 100.0),
    max_iter: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
  """Fits the probe on `train` = (features, labels), picks C on `validation`, scores `evaluate`.

  `validation` may be None only with a single C. Returns accuracy (on `evaluate`), the chosen
  C as `regularization`, its validation and train accuracy, and every C's validation accuracy.
  """
  regularization = tuple(float(c) for c in regularization)
  if validation is None and len(regularization) != 1:
    raise ValueError("linear_probe: choosing among several C needs a validation split.")
  transform = standardizer(train[0])
  x_train, y_train = transform(train[0]), np.asarray(train[1])
  result, best, best_score = {}, None, -1.0
  for c in regularization:
    model = linear_model.LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    # One BLAS thread: scikit-learn's BLAS threads fight JAX's for the cores (kd_jax.evaluators.
    # downstream measured ~100× slower fits on 2 cores without this).
    with warnings.catch_warnings(), threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
      # Reported instead: an unconverged fit at a large C is still a valid probe.
      warnings.simplefilter("ignore", sklearn_exceptions.ConvergenceWarning)
      model.fit(x_train, y_train)
    if validation is None:
      best = model
      break
    score = float(model.score(transform(validation[0]), np.asarray(validation[1])))
    result[f"validation_accuracy_C{c:g}"] = score
    if score > best_score:  # strict: the first maximum wins ties
      best, best_score = model, score
  result["regularization"] = float(best.C)
  if validation is not None:
    result["validation_accuracy"] = best_score
  result["train_accuracy"] = float(best.score(x_train, y_train))
  result["accuracy"] = float(best.score(transform(evaluate[0]), np.asarray(evaluate[1])))
  return result


@dataclasses.dataclass
class LinearProbe:
  """Whole-split evaluator "kd_jax.evaluators.linear_probe:LinearProbe".

  Attributes:
    train_split: fits the probe and its standardisation.
    validation_split: where C is chosen ("" only with a single C in `regularization`).
    regularization: the grid of C (inverse L2 strength of scikit-learn's LogisticRegression).
    max_iter: L-BFGS iterations per fit.
    output: the student output probed.
  """

  train_split: str = "train"
  validation_split: str = "validation"
  regularization: tuple = (0.01, 0.1, 1.0, 10.0, 100.0)
  max_iter: int = 1000
  output: str = "embedding"

  def __post_init__(self):
    self.regularization = tuple(float(c) for c in self.regularization)
    if not self.regularization or min(self.regularization) <= 0:
      raise ValueError(
          f"linear_probe: regularization must be positive C values, got {self.regularization}."
      )
    if self.validation_split and self.validation_split == self.train_split:
      raise ValueError("linear_probe: validation_split must differ from train_split.")

  def __call__(self, run: EvalRun) -> dict[str, float]:
    if run.split == self.train_split:
      raise ValueError(f"evaluator {run.name!r}: a probe is not evaluated on its train split.")
    train = split_embeddings(run, self.train_split, self.output)
    validation = (
        split_embeddings(run, self.validation_split, self.output) if self.validation_split else None
    )
    evaluate = (
        validation
        if run.split == self.validation_split
        else split_embeddings(run, run.split, self.output)
    )
    result = linear_probe(
        train,
        validation,
        evaluate,
        regularization=self.regularization,
        max_iter=self.max_iter,
        seed=run.context.seed,
    )
    result["train_examples"] = int(train[0].shape[0])
    return result
