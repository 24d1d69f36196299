"""The run configuration: every key the trainer understands, its default, and fail-fast checks.

Experiment files in `experiments/configs/` start from `default_config()` and change what they
need. `validate` rejects keys the trainer does not know (a typo such as `lerning_rate` would
otherwise be silently ignored) and inconsistent settings, before anything is trained.

A config may instead hold `stages` (see `is_staged`): named run configs executed in the order of
`stage_order`, each in WORKDIR/<stage name>, where a teacher's relative `workdir` names an
earlier stage — how one command trains a teacher and then distils it.
"""

from __future__ import annotations

from typing import Any

import ml_collections
from ml_collections import config_dict

_FREE_FORM = ("model_kwargs", "method")  # validated by the model / method constructors
_FIXED_SUBTREES = ("optimizer",)


def default_config() -> ml_collections.ConfigDict:
  """A complete single-run config; see the comments for what each key does."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Data: `kd_jax.data.get_source(dataset, split)`, or "package.module:function" for a custom
  # source function called as function(split, data_dir=..., manual_dir=...).
  c.dataset = "mnist5k"
  c.data_dir = config_dict.placeholder(str)
  c.manual_dir = config_dict.placeholder(str)
  c.train_split = "train"
  c.eval_split = "test"
  c.input_key = "image"          # batch entry fed to the models (uint8 pixels are scaled to [0, 1])
  # Per-example transforms (example, rng) -> example, e.g. ("NormalizeImage",
  # {"name": "PadCropFlip", "padding": 2}): names from kd_jax.data or "package.module:callable".
  c.train_transforms = ()
  c.eval_transforms = ()
  # Batch transforms (batch, rng) -> batch on the host before the step, e.g.
  # ({"name": "mixup", "alpha": 1.0},): teachers then label the mixed input (Stanton et al.).
  c.batch_transforms = ()
  c.num_classes = 10
  # Student: `kd_jax.models.get_model(model, num_classes=..., **model_kwargs)`, or
  # "package.module:callable" returning a linen module.
  c.model = "resnet20"
  c.model_kwargs = ml_collections.ConfigDict()
  # Frozen teachers (an ensemble when several): each ConfigDict(model=..., model_kwargs=...,
  # workdir=...) — the newest checkpoint of that run's workdir is loaded.
  c.teachers = ()
  c.method = ml_collections.ConfigDict({"name": "supervised"})
  # Optimisation. batch_size is global (all devices and hosts together).
  c.batch_size = 128
  c.eval_batch_size = 256
  c.total_steps = 1000
  c.grad_accum_steps = 1
  c.compute_dtype = "float32"    # or "bfloat16" (params stay float32)
  c.optimizer = ml_collections.ConfigDict(dict(
      name="sgd",                # sgd | adam | adamw
      learning_rate=0.1,
      momentum=0.9,
      nesterov=False,
      weight_decay=0.0,          # L2 on kernels (ndim > 1) for sgd/adam, decoupled for adamw
      schedule="cosine",         # cosine | constant
      warmup_steps=0,
      end_learning_rate=0.0,
  ))
  # Bookkeeping.
  c.log_every = 50
  c.eval_every = 0               # 0: evaluate only at the end
  c.checkpoint_every = 500
  c.max_to_keep = 3
  c.async_checkpointing = True
  c.progress_bar = True
  c.multihost = False            # call jax.distributed.initialize() (TPU pods, multi-node GPU)
  return c


def is_staged(config: ml_collections.ConfigDict) -> bool:
  return "stages" in config


def _unknown_keys(config, reference, prefix="") -> list[str]:
  unknown = []
  for key in config.keys():
    if key not in reference:
      unknown.append(prefix + key)
    elif key in _FIXED_SUBTREES and not prefix:
      unknown += _unknown_keys(config[key], reference[key], prefix=f"{key}.")
  return unknown


def validate(config: ml_collections.ConfigDict, *, name: str = "config"
             ) -> ml_collections.ConfigDict:
  """Checks one run config against the schema and for consistency; returns a completed copy.

  Raises:
    ValueError: naming the unknown keys, or the inconsistent settings.
  """
  reference = default_config()
  unknown = _unknown_keys(config, reference)
  if unknown:
    raise ValueError(f"Unknown key(s) in {name}: {sorted(unknown)}. Known keys: "
                     f"{sorted(reference.keys())} "
                     f"(optimizer: {sorted(reference.optimizer.keys())}).")
  merged = default_config()
  merged.update(config.to_dict())  # recursive into sub-dicts: defaults fill the gaps
  _check_consistency(merged, name)
  return merged


def teacher_specs(config) -> list[ml_collections.ConfigDict]:
  specs = []
  for index, teacher in enumerate(config.teachers):
    teacher = ml_collections.ConfigDict(dict(teacher))
    missing = {"model", "workdir"} - set(teacher.keys())
    extra = set(teacher.keys()) - {"model", "model_kwargs", "workdir"}
    if missing or extra:
      raise ValueError(f"teachers[{index}] must have keys model, workdir (and optionally "
                       f"model_kwargs); missing {sorted(missing)}, unknown {sorted(extra)}.")
    if "model_kwargs" not in teacher:
      teacher.model_kwargs = ml_collections.ConfigDict()
    specs.append(teacher)
  return specs


def _check_consistency(c, name: str) -> None:
  from kd_jax import methods  # pylint: disable=g-import-not-at-top  (avoid a cycle at import)

  def fail(message):
    raise ValueError(f"Inconsistent {name}: {message}")

  for key in ("batch_size", "eval_batch_size", "total_steps", "grad_accum_steps", "log_every",
              "checkpoint_every", "max_to_keep", "num_classes"):
    if not isinstance(c[key], int) or c[key] < 1:
      fail(f"{key} must be a positive integer, got {c[key]!r}.")
  if c.eval_every < 0:
    fail(f"eval_every must be >= 0, got {c.eval_every}.")
  if c.batch_size % c.grad_accum_steps:
    fail(f"batch_size={c.batch_size} is not divisible by grad_accum_steps={c.grad_accum_steps}.")
  if c.compute_dtype not in ("float32", "bfloat16"):
    fail(f"compute_dtype must be 'float32' or 'bfloat16', got {c.compute_dtype!r}.")
  if c.optimizer.name not in ("sgd", "adam", "adamw"):
    fail(f"optimizer.name must be sgd, adam or adamw, got {c.optimizer.name!r}.")
  if c.optimizer.schedule not in ("cosine", "constant"):
    fail(f"optimizer.schedule must be cosine or constant, got {c.optimizer.schedule!r}.")
  method_cfg = c.method.to_dict()
  if "name" not in method_cfg:
    fail("method.name is missing.")
  method = methods.get_method(**method_cfg)
  teachers = teacher_specs(c)
  if method.uses_teacher and not teachers:
    fail(f"method {method_cfg['name']!r} distils from a teacher but config.teachers is empty.")
  # num_classes=None in model_kwargs builds a headless encoder (SEA, CompRess): nothing to match.
  for index, teacher in enumerate(teachers):
    classes = teacher.model_kwargs.get("num_classes", c.num_classes)
    if classes not in (None, c.num_classes):
      fail(f"teachers[{index}] ({teacher.model}) has num_classes={classes} but the student and "
           f"dataset have num_classes={c.num_classes}.")
  student_classes = c.model_kwargs.get("num_classes", c.num_classes)
  if student_classes not in (None, c.num_classes):
    fail(f"model_kwargs.num_classes={student_classes} differs from num_classes={c.num_classes}.")


def validate_stages(config: ml_collections.ConfigDict) -> list[tuple[str, Any]]:
  """Validates every stage and the teacher references between them; returns [(name, config)]."""
  unknown = set(config.keys()) - {"stages", "stage_order"}
  if unknown:
    raise ValueError(f"A staged config holds only `stages` and `stage_order`; unknown top-level "
                     f"key(s) {sorted(unknown)} (put them inside a stage).")
  # ConfigDict iterates keys sorted, so the run order is explicit.
  order = list(config.get("stage_order", ()))
  if sorted(order) != sorted(config.stages.keys()):
    raise ValueError(f"stage_order {order} must list every stage of `stages` "
                     f"{sorted(config.stages.keys())} exactly once.")
  stages = [(stage, validate(config.stages[stage], name=f"stage {stage!r}")) for stage in order]
  seen = {}
  for stage, stage_config in stages:
    for index, teacher in enumerate(teacher_specs(stage_config)):
      if teacher.workdir in seen:
        _check_teacher_matches_stage(stage, index, teacher, teacher.workdir, seen[teacher.workdir],
                                     num_classes=stage_config.num_classes)
      elif teacher.workdir in dict(stages):
        raise ValueError(f"stage {stage!r}: teachers[{index}] uses stage {teacher.workdir!r}, "
                         "which runs later; order the stages so teachers come first.")
    seen[stage] = stage_config
  return stages


def _check_teacher_matches_stage(stage: str, index: int, teacher, teacher_stage: str,
                                 teacher_config, *, num_classes: int) -> None:
  problems = []
  if teacher_config.num_classes != num_classes:
    problems.append(f"num_classes {num_classes} vs {teacher_config.num_classes}")
  if teacher.model != teacher_config.model:
    problems.append(f"model {teacher.model!r} vs {teacher_config.model!r}")
  if dict(teacher.model_kwargs) != dict(teacher_config.model_kwargs):
    problems.append(f"model_kwargs {dict(teacher.model_kwargs)} vs "
                    f"{dict(teacher_config.model_kwargs)}")
  if problems:
    raise ValueError(f"stage {stage!r}: teachers[{index}] does not match the run of stage "
                     f"{teacher_stage!r} that trains it: " + "; ".join(problems) + ".")


def diff(saved: dict, current: dict, prefix: str = "") -> list[str]:
  """Human-readable differences between two nested dicts (for the resume check)."""
  out = []
  for key in sorted(set(saved) | set(current)):
    a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
    if isinstance(a, dict) and isinstance(b, dict):
      out += diff(a, b, prefix=f"{prefix}{key}.")
    elif a != b:
      out.append(f"{prefix}{key}: {a!r} -> {b!r}")
  return out


def listify(value: Any) -> Any:
  """Tuples to lists recursively, so a config compares equal to its JSON round trip."""
  if isinstance(value, dict):
    return {k: listify(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [listify(v) for v in value]
  return value

