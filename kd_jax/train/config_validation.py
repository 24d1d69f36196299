"""Fail-fast checks of one run config: unknown keys (a typo such as `lerning_rate` would otherwise
be silently ignored) and inconsistent settings, each refused with one line naming the key and
its value, before anything is trained.
"""

from __future__ import annotations

import math
from typing import Any

import ml_collections

from kd_jax.train import config as config_lib
from kd_jax.train import init_from as init_from_lib

_FREE_FORM = (
    "model_kwargs",
    "method",
    "evals",
    "init_from",
)  # validated by the model / method constructors
_FIXED_SUBTREES = ("optimizer", "model_selection")


def _unknown_keys(config, reference, prefix="") -> list[str]:
  unknown = []
  for key in config.keys():
    if key not in reference:
      unknown.append(prefix + key)
    elif key in _FIXED_SUBTREES and not prefix:
      unknown += _unknown_keys(config[key], reference[key], prefix=f"{key}.")
  return unknown


def validate(
    config: ml_collections.ConfigDict, *, name: str = "config"
) -> ml_collections.ConfigDict:
  """Checks one run config against the schema and for consistency; returns a completed copy.

  Raises:
    ValueError: naming the unknown keys, or the inconsistent settings.
  """
  reference = config_lib.default_config()
  unknown = _unknown_keys(config, reference)
  if unknown:
    raise ValueError(
        f"Unknown key(s) in {name}: {sorted(unknown)}. Known keys: "
        f"{sorted(reference.keys())} "
        f"(optimizer: {sorted(reference.optimizer.keys())})."
    )
  merged = config_lib.default_config()
  merged.update(config.to_dict())  # recursive into sub-dicts: defaults fill the gaps
  _check_consistency(merged, name)
  _check_evals(merged, name)
  return merged


def _check_evals(c, name: str) -> None:
  for eval_name, spec in c.evals.items():
    if not hasattr(spec, "keys"):
      raise ValueError(
          f"Inconsistent {name}: evals.{eval_name} must be a dict with 'split' (and "
          f"'kind', 'every', options), got {spec!r}."
      )
    if "split" not in spec:
      raise ValueError(f"Inconsistent {name}: evals.{eval_name} has no 'split'.")
    every = spec.get("every", 0)
    if not isinstance(every, int) or every < 0:
      raise ValueError(
          f"Inconsistent {name}: evals.{eval_name}.every must be an integer >= 0, "
          f"got {every!r}."
      )
    first = spec.get("first")
    if first is not None and (not _is_int(first) or first < 0):
      raise ValueError(
          f"Inconsistent {name}: evals.{eval_name}.first must be an integer >= 0 (the first "
          f"step evaluated; 0 = before training), got {first!r}."
      )
    target = spec.get("select_on")
    if target and target in c.evals and c.evals[target].get("split") == c.eval_split:
      raise ValueError(
          f"Inconsistent {name}: evals.{eval_name} selects on evaluator {target!r}, "
          f"which reads the test split {c.eval_split!r}; choose on validation."
      )
  selection = c.model_selection
  if selection.evaluator:
    spec = c.evals.get(selection.evaluator)
    if spec is None:
      raise ValueError(
          f"Inconsistent {name}: model_selection.evaluator "
          f"{selection.evaluator!r} is not in evals {sorted(c.evals)}."
      )
    if spec.get("split") == c.eval_split:
      raise ValueError(
          f"Inconsistent {name}: model_selection reads evaluator "
          f"{selection.evaluator!r} on the test split {c.eval_split!r}; select on "
          "a validation split."
      )
    if not spec.get("every"):
      raise ValueError(
          f"Inconsistent {name}: model_selection needs evals."
          f"{selection.evaluator}.every > 0 (it compares periodic evaluations)."
      )
    if not selection.metric or selection.mode not in ("max", "min"):
      raise ValueError(
          f"Inconsistent {name}: model_selection needs a metric and mode 'max' or "
          f"'min', got metric={selection.metric!r}, mode={selection.mode!r}."
      )
    if not isinstance(selection.patience, int) or selection.patience < 0:
      raise ValueError(
          f"Inconsistent {name}: model_selection.patience must be an integer >= 0, "
          f"got {selection.patience!r}."
      )
  if c.validation_split is not None and c.validation_split == c.eval_split:
    raise ValueError(
        f"Inconsistent {name}: validation_split and eval_split are both "
        f"{c.eval_split!r}; choices made on validation would be made on test."
    )


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
  """A finite int or float (bool is not a number here; NaN and inf are not finite)."""
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def optimizer_problem(opt, total_steps: int) -> str | None:
  """The first optimiser setting outside its domain, as one line naming key and value; or None.

  A negative learning rate is gradient ascent, a zero one divides by zero in the cosine
  schedule, a negative momentum or warm-up trains something else than what was asked: all of
  them would otherwise run to the end without a word.
  """
  if opt.name not in ("sgd", "adam", "adamw"):
    return f"optimizer.name must be sgd, adam or adamw, got {opt.name!r}."
  if opt.schedule not in ("cosine", "constant"):
    return f"optimizer.schedule must be cosine or constant, got {opt.schedule!r}."
  if not _is_real(opt.learning_rate) or opt.learning_rate <= 0:
    return f"optimizer.learning_rate must be a finite number > 0, got {opt.learning_rate!r}."
  if opt.momentum is not None and (not _is_real(opt.momentum) or not 0 <= opt.momentum < 1):
    return f"optimizer.momentum must be in [0, 1) (or None), got {opt.momentum!r}."
  if not isinstance(opt.nesterov, bool):
    return f"optimizer.nesterov must be True or False, got {opt.nesterov!r}."
  if opt.nesterov and opt.name == "sgd" and not opt.momentum:
    return "optimizer.nesterov=True needs optimizer.momentum > 0."
  if not _is_real(opt.weight_decay) or opt.weight_decay < 0:
    return f"optimizer.weight_decay must be a finite number >= 0, got {opt.weight_decay!r}."
  if not _is_int(opt.warmup_steps) or not 0 <= opt.warmup_steps < max(total_steps, 1):
    return (
        f"optimizer.warmup_steps must be an integer in [0, total_steps={total_steps}), "
        f"got {opt.warmup_steps!r}."
    )
  restart_steps, hold_steps = opt.get("restart_steps", 0), opt.get("hold_steps", 1)
  if not _is_int(restart_steps) or restart_steps < 0:
    return f"optimizer.restart_steps must be an integer >= 0, got {restart_steps!r}."
  if restart_steps and opt.schedule != "cosine":
    return (
        f"optimizer.restart_steps={restart_steps} restarts a cosine; schedule is {opt.schedule!r}."
    )
  if not _is_int(hold_steps) or hold_steps < 1:
    return f"optimizer.hold_steps must be an integer >= 1, got {hold_steps!r}."
  if not _is_real(opt.end_learning_rate) or opt.end_learning_rate < 0:
    return (
        f"optimizer.end_learning_rate must be a finite number >= 0, "
        f"got {opt.end_learning_rate!r}."
    )
  return None


def _check_consistency(c, name: str) -> None:
  from kd_jax import methods  # pylint: disable=g-import-not-at-top  (avoid a cycle at import)

  def fail(message):
    raise ValueError(f"Inconsistent {name}: {message}")

  for key in (
      "batch_size",
      "eval_batch_size",
      "grad_accum_steps",
      "log_every",
      "checkpoint_every",
      "max_to_keep",
      "num_classes",
  ):
    if not _is_int(c[key]) or c[key] < 1:
      fail(f"{key} must be a positive integer, got {c[key]!r}.")
  if not _is_int(c.total_steps) or c.total_steps < 0:
    fail(
        f"total_steps must be an integer >= 0 (0: evaluate the model as built), got {c.total_steps!r}."
    )
  if not _is_int(c.eval_every) or c.eval_every < 0:
    fail(f"eval_every must be an integer >= 0 (0: only at the end), got {c.eval_every!r}.")
  if not _is_int(c.seed):
    fail(f"seed must be an integer, got {c.seed!r}.")
  for key in ("async_checkpointing", "progress_bar", "multihost"):
    if not isinstance(c[key], bool):
      fail(f"{key} must be True or False, got {c[key]!r}.")
  if not isinstance(c.input_key, str) or not c.input_key:
    fail(f"input_key must name a batch entry (a non-empty string), got {c.input_key!r}.")
  problem = optimizer_problem(c.optimizer, c.total_steps)
  if problem:
    fail(problem)
  if c.batch_size % c.grad_accum_steps:
    fail(f"batch_size={c.batch_size} is not divisible by grad_accum_steps={c.grad_accum_steps}.")
  if c.compute_dtype not in ("float32", "bfloat16"):
    fail(f"compute_dtype must be 'float32' or 'bfloat16', got {c.compute_dtype!r}.")
  method_cfg = c.method.to_dict()
  if "name" not in method_cfg:
    fail("method.name is missing.")
  method = methods.get_method(**method_cfg)
  teachers = config_lib.teacher_specs(c)
  if method.uses_teacher and not teachers:
    fail(f"method {method_cfg['name']!r} distils from a teacher but config.teachers is empty.")
  # num_classes=None in model_kwargs builds a headless encoder (SEA, CompRess): nothing to match.
  for index, teacher in enumerate(teachers):
    classes = teacher.model_kwargs.get("num_classes", c.num_classes)
    if classes not in (None, c.num_classes):
      fail(
          f"teachers[{index}] ({teacher.model}) has num_classes={classes} but the student and "
          f"dataset have num_classes={c.num_classes}."
      )
  try:
    init_from_lib.spec(c)
  except ValueError as error:
    fail(str(error))
  student_classes = c.model_kwargs.get("num_classes", c.num_classes)
  if student_classes not in (None, c.num_classes):
    fail(f"model_kwargs.num_classes={student_classes} differs from num_classes={c.num_classes}.")
