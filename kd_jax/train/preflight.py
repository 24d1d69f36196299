"""Resolving everything a run will need before any stage trains (`staged_config.validate_stages`).

A schema check cannot see that a later stage names a dataset that does not exist, a split the
file does not have, a model with a typo, or text that is never tokenised; without this, such a
mistake surfaces only after the earlier stages have trained. Here every stage's data source
(each split it reads), transforms (run on one real example), student and teacher models are
built — cheap, no parameters are initialised — and the first problem is reported as one line
naming the stage. Checks the loop would make at a stage's start-up run here too when they need
no training: a pretrained teacher declared random, a finished teacher run of another network or
other data, a batch-dependent method with gradient accumulation, a teacher cache over random
transforms, an evaluator option out of its domain.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from kd_jax.train import config as config_lib
from kd_jax.train import pretrained_teachers
from kd_jax.train import workdir_config


class _Sources:
  """Sources opened during one check, so stages that share a split open it once."""

  def __init__(self):
    self._opened: dict[tuple, Any] = {}

  def get(self, config, split: str):
    from kd_jax import data  # pylint: disable=g-import-not-at-top  (TFDS is slow to import)

    key = (config.dataset, split, config.data_dir, config.manual_dir)
    if key not in self._opened:
      self._opened[key] = data.get_source(
          config.dataset, split, data_dir=config.data_dir, manual_dir=config.manual_dir
      )
    return self._opened[key]


def _splits(config) -> list[tuple[str, str]]:
  splits = [("train_split", config.train_split), ("eval_split", config.eval_split)]
  if config.get("validation_split"):
    splits.append(("validation_split", config.validation_split))
  for name, spec in dict(config.get("evals", {})).items():
    # An evaluator that reads its own dataset (e.g. `downstream`'s `dataset` option) opens its
    # split there, not in the run's dataset.
    if "split" in spec and not spec.get("dataset"):
      splits.append((f"evals.{name}.split", spec["split"]))
  return splits


def _check_classes(config, source, fail) -> None:
  classes = getattr(source, "num_classes", None)
  names = getattr(source, "label_names", None)
  if not isinstance(classes, int):
    return
  if classes > config.num_classes or (names and classes != config.num_classes):
    named = f" ({', '.join(names)})" if names else ""
    fail(
        f"dataset {config.dataset!r} has {classes} classes{named} but num_classes="
        f"{config.num_classes}."
    )


def _check_example(config, source, transforms_key: str, split: str, fail) -> None:
  """Runs the configured per-example transforms on one record; the input must come out."""
  from kd_jax.train import build  # pylint: disable=g-import-not-at-top  (import cycle)

  if not len(source):
    fail(f"split {split!r} of {config.dataset!r} is empty.")
  # pylint: disable-next=protected-access
  transforms = build._transforms(config[transforms_key], build.data_api())
  example = dict(source[0])
  rng = np.random.default_rng(0)
  for transform in transforms:
    example = transform(example, rng)
  if config.input_key not in example:
    hint = ""
    if isinstance(example.get("text"), str):
      hint = (
          ' The examples hold raw "text": tokenise it with {"name": "Tokenize", '
          '"max_length": 128} in train_transforms and eval_transforms.'
      )
    fail(
        f"after {transforms_key} an example of split {split!r} has keys {sorted(example)}, "
        f"not input_key {config.input_key!r}.{hint}"
    )


def check_resolvable(
    config, *, name: str, stages: tuple[str, ...] = (), sources: _Sources | None = None
) -> None:
  """Opens every split, runs the transforms on one example, builds student and teachers.

  Args:
    config: a validated run config (`config_validation.validate`).
    name: how errors name it, e.g. "stage 'student'".
    stages: names of the stages of the same staged config (teacher workdirs may name them).
    sources: sources already opened by the checks of other stages.

  Raises:
    ValueError: one line naming `name` and the first thing that does not resolve.
  """
  from kd_jax.train import build  # pylint: disable=g-import-not-at-top  (import cycle)

  def fail(message):
    raise ValueError(f"{name}: {message}")

  sources = sources or _Sources()
  opened = {}
  for key, split in _splits(config):
    try:
      opened[key] = sources.get(config, split)
    except Exception as error:  # pylint: disable=broad-except  (any failure is reported here)
      fail(
          f"dataset {config.dataset!r}, {key}={split!r} does not resolve: "
          f"{type(error).__name__}: {error}"
      )
  _check_classes(config, opened["train_split"], fail)
  for key, transforms_key in (
      ("train_split", "train_transforms"),
      ("eval_split", "eval_transforms"),
  ):
    try:
      _check_example(config, opened[key], transforms_key, config[key], fail)
    except ValueError as error:
      if str(error).startswith(f"{name}:"):
        raise
      fail(f"{transforms_key}: {error}")
    except (KeyError, TypeError, ImportError) as error:
      fail(f"{transforms_key}: {type(error).__name__}: {error}")
  try:
    build.build_model(config.model, config.num_classes, config.model_kwargs)
  except (ValueError, ImportError) as error:
    fail(f"student: {error}")
  for index, teacher in enumerate(config_lib.teacher_specs(config)):
    _check_teacher(config, index, teacher, stages, fail)
  _check_run_settings(config, fail)


def _check_teacher(config, index: int, teacher, stages: tuple[str, ...], fail) -> None:
  """The teacher's module builds; a pretrained one really brings weights; a finished run
  (not a stage of this config) describes the same network and was trained on the same data."""
  from kd_jax.train import build  # pylint: disable=g-import-not-at-top  (import cycle)

  try:
    module = build.build_model(teacher.model, config.num_classes, teacher.model_kwargs)
  except (ValueError, ImportError) as error:
    fail(f"teachers[{index}]: {error}")
  if teacher.get("pretrained", False):
    random = pretrained_teachers.declared_random(teacher)
    if random:
      fail(
          f"teachers[{index}] is pretrained=True but {random}: a random teacher; train it "
          "as a stage (a teacher with a workdir) instead."
      )
    if not hasattr(module, "load_pretrained"):
      fail(
          f"teachers[{index}] is pretrained=True but {teacher.model!r} has no "
          "load_pretrained(variables) to supply its weights; give the workdir of a trained run."
      )
    return
  if not os.path.isabs(teacher.workdir) or teacher.workdir in stages:
    return
  if not os.path.isdir(os.path.join(teacher.workdir, "checkpoints")):
    fail(
        f"teachers[{index}].workdir {teacher.workdir!r} is neither a stage of this config "
        "nor a finished run (it has no checkpoints/): train that teacher first."
    )
  try:  # what the loop checks when it restores the teacher, here before any stage trains
    build._check_teacher_run(index, teacher, config)  # pylint: disable=protected-access
    workdir_config.check_data(
        config, teacher.workdir, where=f"teachers[{index}] ({teacher.workdir})"
    )
  except ValueError as error:
    fail(str(error))


def _check_run_settings(config, fail) -> None:
  """Checks the loop makes at a stage's start-up that need no data: the method with gradient
  accumulation, the teacher cache's transforms, the evaluators' options."""
  from kd_jax.train import build  # pylint: disable=g-import-not-at-top  (import cycle)
  from kd_jax.train import evaluation  # pylint: disable=g-import-not-at-top
  from kd_jax.train import teacher_cache  # pylint: disable=g-import-not-at-top

  method = build.build_method(config)
  if config.grad_accum_steps > 1 and method.batch_dependent:
    fail(
        f"method {config.method.name!r} has a batch-dependent loss (it couples the examples "
        f"of a batch), so grad_accum_steps={config.grad_accum_steps} would silently change its "
        "objective; set grad_accum_steps=1."
    )
  try:
    if config.teacher_cache:
      # pylint: disable-next=protected-access
      transforms = build._transforms(config.train_transforms, build.data_api())
      teacher_cache.check_cacheable(config, method, transforms)
    evaluation.Evaluations(config)
  except ValueError as error:
    fail(str(error))


def check_stages(stages: list[tuple[str, Any]]) -> None:
  """`check_resolvable` for every stage, in run order, sharing opened sources."""
  names, sources = tuple(name for name, _ in stages), _Sources()
  for stage, stage_config in stages:
    check_resolvable(stage_config, name=f"stage {stage!r}", stages=names, sources=sources)
