"""Downstream cross-validation on frozen student embeddings (SEA's evaluation, PAPERS.md §1).

For every example of the evaluator's split (all folds of the downstream task, e.g. UrbanSound8K's
10 folds, ESC-50's "fold1+...+fold5", or a task of another dataset through `dataset`):

  clip embedding   e(x) = agg_w f_S(x_w) over the clip's windows x_w (1 s in SEA), agg = mean
                   (the paper's framewise classifiers see the windows; the mean is the usual clip
                   summary) or max; a clip that is one window is embedded as is.
  per fold f       train on the folds ≠ f (or `train_folds`), standardise with the training
                   folds' mean / std, fit a classifier (logistic regression or an MLP,
                   scikit-learn), score fold f.
  result           mean and standard deviation (ddof 0, i.e. np.std) over the held-out folds of
                   accuracy (single-label) or of micro / macro AUPRC (multi-label, SONYC-UST):
                   micro pools every (clip, class) decision into one ranking, macro averages the
                   per-class average precision over the classes with a positive in the fold.

Windows: a model input of [batch, windows, samples] is taken as pre-cut windows (an optional
batch entry "window_mask" [batch, windows] marks the real ones); with `window_samples` > 0, a
[batch, samples] waveform is cut into windows of that length every `hop_samples` (a clip shorter
than one window is zero-padded to one).
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import threadpoolctl
from sklearn import exceptions as sklearn_exceptions
from sklearn import linear_model
from sklearn import metrics as sklearn_metrics
from sklearn import multiclass
from sklearn import neural_network
from sklearn import preprocessing

from kd_jax.evaluators import linear_probe
from kd_jax.evaluators.base import EvalRun

CLASSIFIERS = ("logistic", "mlp")
AGGREGATIONS = ("mean", "max")


def frame(x, window: int, hop: int):
  """[batch, T] → [batch, W, window]: windows every `hop` samples, W = 1 + ⌊(T − window)/hop⌋."""
  length = x.shape[1]
  if length < window:
    x = jnp.pad(x, ((0, 0), (0, window - length)))
    length = window
  starts = np.arange(0, length - window + 1, hop)
  return x[:, starts[:, None] + np.arange(window)[None]]


def aggregate_windows(embed, windows, window_mask=None, aggregation: str = "mean"):
  """agg_w embed(windows[:, w]) for windows [batch, W, ...] → [batch, d] (`embed` sees
  [batch·W, ...]); windows where `window_mask` [batch, W] is False are left out."""
  batch, count = windows.shape[:2]
  flat = embed(windows.reshape((batch * count,) + windows.shape[2:]))
  per_window = flat.reshape(batch, count, -1).astype(jnp.float32)
  mask = jnp.ones((batch, count), bool) if window_mask is None else window_mask.astype(bool)
  if aggregation == "mean":
    weights = mask.astype(jnp.float32)[..., None]
    return jnp.sum(per_window * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)
  if aggregation == "max":
    return jnp.max(jnp.where(mask[..., None], per_window, -jnp.inf), axis=1)
  raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}.")


def _classifier(kind: str, multilabel: bool, options: dict, seed: int):
  if kind == "logistic":
    model = linear_model.LogisticRegression(
        C=options["regularization"], max_iter=options["max_iter"], random_state=seed
    )
    # One binary problem per class: the multi-label layout (a clip may hold several classes).
    return multiclass.OneVsRestClassifier(model) if multilabel else model
  if kind == "mlp":  # multi-label natively (one sigmoid per class)
    return neural_network.MLPClassifier(
        hidden_layer_sizes=tuple(options["hidden"]),
        alpha=options["alpha"],
        batch_size=options["batch_size"],
        learning_rate_init=options["learning_rate"],
        max_iter=options["epochs"],
        random_state=seed,
    )
  raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {kind!r}.")


def _fold_scores(model, x, y, multilabel: bool) -> dict[str, float]:
  if not multilabel:
    return {"accuracy": float(np.mean(model.predict(x) == y))}
  scores = model.predict_proba(x)
  present = [c for c in range(y.shape[1]) if y[:, c].any()]
  return {
      "micro_auprc": float(sklearn_metrics.average_precision_score(y, scores, average="micro")),
      "macro_auprc": float(
          np.mean([sklearn_metrics.average_precision_score(y[:, c], scores[:, c]) for c in present])
      ),
  }


def cross_validate(
    features: np.ndarray,
    labels: np.ndarray,
    folds: np.ndarray,
    *,
    classifier: str = "logistic",
    multilabel: bool = False,
    held_out_folds=(),
    train_folds=(),
    seed: int = 0,
    **options,
) -> dict[str, float]:
  """Leave-one-fold-out scores (see the module docstring) of features [N, d], labels [N] (class
  ids) or [N, C] (0/1), folds [N] (any values; compared as strings).

  held_out_folds: the folds scored in turn (empty: every fold). train_folds: the folds every
  classifier trains on (empty: all but the held-out one). options: regularization, max_iter
  (logistic); hidden, alpha, batch_size, learning_rate, epochs (mlp).
  """
  features = np.asarray(features, np.float64)
  labels = np.asarray(labels)
  folds = np.array([str(f) for f in folds])
  if multilabel and labels.ndim != 2:
    raise ValueError(f"multi-label cross-validation needs labels [N, C], got {labels.shape}.")
  if not multilabel and labels.ndim != 1:
    raise ValueError(f"single-label cross-validation needs labels [N], got {labels.shape}.")
  names = sorted({str(f) for f in folds})
  held_out = [str(f) for f in held_out_folds] or names
  missing = sorted((set(held_out) | set(map(str, train_folds))) - set(names))
  if missing or len(names) < 2:
    raise ValueError(f"cross-validation folds {missing or names} are not usable; data has {names}.")
  result, per_metric = {}, {}
  for fold in held_out:
    test = folds == fold
    train = np.isin(folds, [str(f) for f in train_folds]) if train_folds else ~test
    scaler = preprocessing.StandardScaler().fit(features[train])
    model = _classifier(classifier, multilabel, options, seed)
    # One BLAS thread: scikit-learn's BLAS threads fight JAX's for the cores, which made these
    # small fits ~100× slower on a 2-core machine.
    with warnings.catch_warnings(), threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
      # An unconverged fit or a class absent from the training folds still gives a valid score.
      warnings.simplefilter("ignore", sklearn_exceptions.ConvergenceWarning)
      warnings.simplefilter("ignore", UserWarning)
      model.fit(scaler.transform(features[train]), labels[train])
    scores = _fold_scores(model, scaler.transform(features[test]), labels[test], multilabel)
    for name, value in scores.items():
      result[f"{name}_fold_{fold}"] = value
      per_metric.setdefault(name, []).append(value)
  for name, values in per_metric.items():
    result[f"{name}_mean"] = float(np.mean(values))
    result[f"{name}_std"] = float(np.std(values))
  result["folds"] = len(held_out)
  result["examples"] = int(len(features))
  return result


@dataclasses.dataclass
class Downstream:
  """Whole-split evaluator "kd_jax.evaluators.downstream:Downstream" (module docstring).

  Attributes:
    classifier: "logistic" or "mlp"; multilabel: labels [N, C] 0/1 and AUPRC instead of accuracy.
    fold_key, label_key: batch entries with each clip's fold and label(s).
    held_out_folds, train_folds: see `cross_validate` (e.g. SONYC-UST's official protocol:
      train_folds=("train",), held_out_folds=("validate",)).
    regularization, max_iter: the logistic regression's C and iterations.
    hidden, alpha, batch_size, learning_rate, epochs: the MLP (the paper: 128 hidden, Adam,
      batch 32, 150 epochs).
    window_samples, hop_samples, aggregation, output: the clip embedding (module docstring).
    dataset, data_dir, manual_dir, transforms, eval_batch_size: read the split from another
      dataset than the run's (`kd_jax.data.get_source`), through these per-example transforms.
  """

  classifier: str = "logistic"
  multilabel: bool = False
  fold_key: str = "fold"
  label_key: str = "label"
  held_out_folds: tuple = ()
  train_folds: tuple = ()
  regularization: float = 1.0
  max_iter: int = 1000
  hidden: tuple = (128,)
  alpha: float = 1e-4
  batch_size: int = 32
  learning_rate: float = 1e-3
  epochs: int = 150
  window_samples: int = 0
  hop_samples: int = 0
  aggregation: str = "mean"
  output: str = "embedding"
  dataset: str = ""
  data_dir: str | None = None
  manual_dir: str | None = None
  transforms: tuple = ()
  eval_batch_size: int = 64

  def __post_init__(self):
    if self.classifier not in CLASSIFIERS:
      raise ValueError(f"downstream: classifier must be one of {CLASSIFIERS}.")
    if self.aggregation not in AGGREGATIONS:
      raise ValueError(f"downstream: aggregation must be one of {AGGREGATIONS}.")
    if self.window_samples < 0 or self.hop_samples < 0:
      raise ValueError("downstream: window_samples and hop_samples must be >= 0.")

  def batches(self, run: EvalRun):
    if not self.dataset:
      return linear_probe.split_batches(run, run.split)
    from kd_jax import data  # pylint: disable=g-import-not-at-top  (TFDS is slow to import)
    from kd_jax.train import build  # pylint: disable=g-import-not-at-top  (import cycle)

    source = data.get_source(
        self.dataset, run.split, data_dir=self.data_dir, manual_dir=self.manual_dir
    )
    transforms = build._transforms(self.transforms, data)  # pylint: disable=protected-access
    return data.eval_batches(source, batch_size=self.eval_batch_size, transforms=transforms)

  def clip_embeddings(self, run: EvalRun):
    """(features [N, d], labels, folds) of the whole split, padding rows dropped."""
    from kd_jax.train import forward as forward_lib  # pylint: disable=g-import-not-at-top  (import cycle)

    embed_fn = linear_probe._embedding_fn(  # pylint: disable=protected-access
        run.forward.student, self.output
    )
    variables = run.student_variables()
    hop = self.hop_samples or self.window_samples

    @jax.jit
    def embed(variables, x, window_mask):
      if self.window_samples and x.ndim == 2:
        x = frame(x, self.window_samples, hop)
      if x.ndim == 3:  # [batch, windows, samples]
        return aggregate_windows(lambda w: embed_fn(variables, w), x, window_mask, self.aggregation)
      return embed_fn(variables, x)

    parts = {"features": [], "labels": [], "folds": []}
    for batch in self.batches(run):
      keep = np.asarray(batch["mask"], bool)
      for key in (self.fold_key, self.label_key):
        if key not in batch:
          raise ValueError(f"evaluator {run.name!r}: the batches have no {key!r} entry.")
      x = forward_lib.model_input(batch, run.input_key, run.forward.compute_dtype)
      mask = batch.get("window_mask")
      features = np.asarray(embed(variables, x, None if mask is None else jnp.asarray(mask)))
      parts["features"].append(features.reshape(len(keep), -1)[keep])
      parts["labels"].append(np.asarray(batch[self.label_key])[keep])
      folds = [f.decode() if isinstance(f, bytes) else f for f in np.asarray(batch[self.fold_key])]
      parts["folds"].append(np.asarray(folds)[keep])
    if not parts["features"]:
      raise ValueError(f"evaluator {run.name!r}: split {run.split!r} produced no examples.")
    features = np.concatenate(parts["features"])
    if not np.all(np.isfinite(features)):
      raise FloatingPointError(f"evaluator {run.name!r}: non-finite embeddings.")
    return features, np.concatenate(parts["labels"]), np.concatenate(parts["folds"])

  def __call__(self, run: EvalRun) -> dict[str, float]:
    features, labels, folds = self.clip_embeddings(run)
    return cross_validate(
        features,
        labels,
        folds,
        classifier=self.classifier,
        multilabel=self.multilabel,
        held_out_folds=self.held_out_folds,
        train_folds=self.train_folds,
        seed=run.context.seed,
        regularization=self.regularization,
        max_iter=self.max_iter,
        hidden=self.hidden,
        alpha=self.alpha,
        batch_size=self.batch_size,
        learning_rate=self.learning_rate,
        epochs=self.epochs,
    )
