"""Host-side checks of what enters a run: labels of every batch, loaded teachers' values.

They exist because the failures they catch are silent otherwise: under `jit` an out-of-range
label is clamped (−1 becomes class C−1) or turns the loss into NaN many steps later; a teacher
whose parameters went NaN still produces "logits", and its student happily reports 100 %
agreement with a constant prediction. (A teacher checkpoint of another architecture is caught by
`build.check_teacher_shapes`.)

All checks are cheap NumPy work, outside the compiled step.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from kd_jax.train import integrity

PyTree = Any


def check_labels(batch: Mapping[str, Any], num_classes: int, where: str) -> None:
  """Raises ValueError if integer class labels in `batch["label"]` fall outside [0, num_classes).

  Costs a min and a max over the batch's labels (microseconds); call it on every host batch.
  Batches without "label" (self-supervised data) and multi-label targets (2-D) pass unchecked;
  rows whose "mask" is False (eval padding) are ignored.

  Args:
    batch: a host batch (NumPy arrays).
    num_classes: the run's `num_classes`.
    where: names the batch in the message, e.g. "train batch of step 12 (mnist5k)".
  """
  if "label" not in batch:
    return
  labels = np.asarray(batch["label"])
  if labels.ndim != 1 or not labels.size:
    return
  if "mask" in batch:  # padded eval batches: padding rows carry no real label
    labels = labels[np.asarray(batch["mask"], bool)]
    if not labels.size:
      return
  if labels.dtype.kind not in "iu":
    raise ValueError(f"{where}: labels must be integer class ids, got dtype {labels.dtype}.")
  low, high = labels.min(), labels.max()
  if low < 0 or high >= num_classes:
    bad = labels[(labels < 0) | (labels >= num_classes)]
    raise ValueError(
        f"{where}: label {int(bad[0])} is outside [0, num_classes={num_classes}) "
        f"({bad.size} of {labels.size} labels in this batch, values from {int(low)} "
        f"to {int(high)})."
    )


def non_finite_leaves(tree: PyTree, infinity_allowed_under: tuple[str, ...] = ()) -> list[str]:
  """Names (orbax style) of the floating-point leaves holding a NaN or an infinity.

  Under a top-level key named in `infinity_allowed_under` only NaN counts: optimiser states keep
  infinities as sentinels (`optax.contrib.reduce_on_plateau` starts its best value at +inf).
  """
  bad = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    array = integrity.host_array(leaf)
    if array.dtype.kind == "f" or array.dtype.name == "bfloat16":
      name = integrity.leaf_name(path)
      values = array.astype(np.float32)
      sentinels_allowed = name.split(".")[0] in infinity_allowed_under
      if np.any(np.isnan(values)) if sentinels_allowed else not np.all(np.isfinite(values)):
        bad.append(name)
  return bad


def check_finite_variables(variables: PyTree, what: str) -> None:
  """Raises FloatingPointError naming `what` and the first non-finite arrays of `variables`.

  For a loaded teacher: `check_finite_variables(teacher_variables, f"teachers[{i}] ({workdir})")`.
  """
  bad = non_finite_leaves(variables)
  if bad:
    raise FloatingPointError(
        f"{what} has non-finite values (NaN or inf) in {len(bad)} array(s): "
        f"{', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}; its training diverged — retrain "
        "it (e.g. with a lower learning rate)."
    )
