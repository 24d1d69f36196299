"""The run configuration: every key the trainer understands, its default, and fail-fast checks.

Experiment files in `experiments/configs/` start from `default_config()` and change what they
need. `validate` rejects keys the trainer does not know (a typo such as `lerning_rate` would
otherwise be silently ignored) and inconsistent settings, before anything is trained.

A config may instead hold `stages` (see `is_staged`): named run configs executed in the order of
`stage_order`, each in WORKDIR/<stage name>, where a teacher's relative `workdir` names an
earlier stage — how one command trains a teacher and then distils it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import ml_collections
from ml_collections import config_dict

from kd_jax.train import choices
from kd_jax.train import init_from as init_from_lib

_FREE_FORM = (
    "model_kwargs",
    "method",
    "evals",
    "init_from",
)  # validated by the model / method constructors
_FIXED_SUBTREES = ("optimizer", "model_selection")


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
  c.eval_split = "test"  # the implicit evaluator "eval" reports on it
  # Held out of train for choices made on data (β, early stopping); `Method.prepare` may read
  # it, never the test split.
  c.validation_split = config_dict.placeholder(str)
  c.input_key = "image"  # batch entry fed to the models (uint8 pixels are scaled to [0, 1])
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
  # The student's starting weights (kd_jax.train.init_from): {"workdir": a finished run or an
  # earlier stage, "checkpoint": "selected" | "last", "interpolate": {"with": "random",
  # "weight": λ}}; params and BatchNorm statistics are copied at step 0, the optimiser starts
  # fresh. Empty: the model's own initialisation. (Not model_kwargs.init_from of BERT models.)
  c.init_from = ml_collections.ConfigDict()
  c.method = ml_collections.ConfigDict({"name": "supervised"})
  # Optimisation. batch_size is global (all devices and hosts together).
  c.batch_size = 128
  c.eval_batch_size = 256
  c.total_steps = 1000
  c.grad_accum_steps = 1
  c.compute_dtype = "float32"  # or "bfloat16" (params stay float32)
  # Compute the teachers' outputs on the train split once and look them up by example index
  # instead of running the teachers every step. Only for deterministic train transforms (no
  # random augmentation, no batch transforms): refused otherwise.
  c.teacher_cache = False
  # Where: TEACHER_CACHE_DIR/<hash of teachers, data, dtype, outputs>/, shared by every run with
  # the same ones ("": WORKDIR/teacher_cache; a staged run shares WORKDIR/teacher_cache_shared).
  c.teacher_cache_dir = ""
  c.optimizer = ml_collections.ConfigDict(
      dict(
          name="sgd",  # sgd | adam | adamw
          learning_rate=0.1,
          momentum=0.9,
          nesterov=False,
          weight_decay=0.0,  # L2 on kernels (ndim > 1) for sgd/adam, decoupled for adamw
          schedule="cosine",  # cosine | constant
          warmup_steps=0,
          end_learning_rate=0.0,
          # Warm restarts: the cosine starts again every `restart_steps` steps (0: one cosine
          # over the run). `hold_steps` > 1 keeps the rate fixed over blocks of that many steps,
          # like a scheduler stepped once per epoch or per round. Steps count the student's
          # updates (a method with alternating phases: only those that train the student).
          restart_steps=0,
          hold_steps=1,
      )
  )
  # Named evaluations (kd_jax.evaluators), run after training and every `every` steps, by name
  # (an evaluator after the one its `select_on` names): {name: {"kind": "metrics" |
  # "retrieval_augmented" | "package.module:Class", "split": ..., "every": 0, **options}};
  # "first": N moves the periodic evaluations to steps N, N + every, ... (0: the state before
  # the first step is evaluated too, e.g. a student started from another run). The
  # evaluator "eval" (per-example metrics on eval_split every eval_every steps) is always
  # there; results.json keeps one entry per name.
  c.evals = ml_collections.ConfigDict()
  # Best checkpoint / early stopping (kd_jax.train.selection): the final evaluations read the
  # state where `evaluator` (periodic, not on eval_split) had the best `metric`; `patience` > 0
  # stops after that many evaluations without improvement. Empty evaluator: the last state.
  c.model_selection = ml_collections.ConfigDict(
      dict(evaluator="", metric="", mode="max", patience=0)
  )
  # Bookkeeping.
  c.log_every = 50
  c.eval_every = 0  # 0: evaluate only at the end
  c.checkpoint_every = 500
  c.max_to_keep = 3
  c.async_checkpointing = True
  c.progress_bar = True
  c.multihost = False  # call jax.distributed.initialize() (TPU pods, multi-node GPU)
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


def validate(
    config: ml_collections.ConfigDict, *, name: str = "config"
) -> ml_collections.ConfigDict:
  """Checks one run config against the schema and for consistency; returns a completed copy.

  Raises:
    ValueError: naming the unknown keys, or the inconsistent settings.
  """
  reference = default_config()
  unknown = _unknown_keys(config, reference)
  if unknown:
    raise ValueError(
        f"Unknown key(s) in {name}: {sorted(unknown)}. Known keys: "
        f"{sorted(reference.keys())} "
        f"(optimizer: {sorted(reference.optimizer.keys())})."
    )
  merged = default_config()
  merged.update(config.to_dict())  # recursive into sub-dicts: defaults fill the gaps
  _check_consistency(merged, name)
  _check_evals(merged, name)
  return merged


def evaluation_specs(config) -> list[tuple[str, dict]]:
  """[(name, {"kind", "split", "every", **options})] in run order; "eval" first unless declared."""
  specs = []
  declared = {name: dict(spec) for name, spec in config.evals.items()}
  if "eval" not in declared:
    specs.append(
        ("eval", {"kind": "metrics", "split": config.eval_split, "every": config.eval_every})
    )
  # ConfigDicts iterate their keys sorted; an evaluator that uses another's result
  # (`select_on`) runs after it.
  pending = sorted(declared)
  while pending:
    ready = [n for n in pending if declared[n].get("select_on") not in pending]
    if not ready:
      raise ValueError(f"evals: the select_on references of {pending} form a cycle.")
    for name in ready:
      spec = dict(declared[name])
      spec.setdefault("kind", "metrics")
      spec.setdefault("every", 0)
      spec.setdefault("first", None)
      specs.append((name, spec))
      pending.remove(name)
  return specs


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


def teacher_specs(config) -> list[ml_collections.ConfigDict]:
  """The teachers of a run config, each with `model`, `model_kwargs`, `workdir` and `pretrained`.

  A teacher is either a finished run (`workdir`: a directory or, in a staged config, an earlier
  stage) or a pretrained model used as it is (`pretrained: True`, no workdir): the module is
  initialised and its `load_pretrained(variables)` supplies the weights (e.g. the frozen
  self-supervised MiniLM that CompRess compresses).
  """
  specs = []
  for index, teacher in enumerate(config.teachers):
    teacher = ml_collections.ConfigDict(dict(teacher))
    pretrained = teacher.get("pretrained", False)
    missing = {"model"} - set(teacher.keys())
    extra = set(teacher.keys()) - {"model", "model_kwargs", "workdir", "pretrained"}
    if missing or extra:
      raise ValueError(
          f"teachers[{index}] must have keys model and workdir (or pretrained=True), optionally "
          f"model_kwargs; missing {sorted(missing)}, unknown {sorted(extra)}."
      )
    if not isinstance(pretrained, bool) or pretrained == bool(teacher.get("workdir")):
      raise ValueError(
          f"teachers[{index}] needs exactly one of a workdir (a trained run) and pretrained=True "
          f"(weights from the model's load_pretrained); got workdir="
          f"{teacher.get('workdir')!r}, pretrained={pretrained!r}."
      )
    if "model_kwargs" not in teacher:
      teacher.model_kwargs = ml_collections.ConfigDict()
    # Keys are added only when set, so configs saved before `pretrained` existed still match.
    teacher.workdir = teacher.get("workdir", "")
    specs.append(teacher)
  return specs


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
  teachers = teacher_specs(c)
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


def validate_stages(
    config: ml_collections.ConfigDict, *, resolve: bool = True
) -> list[tuple[str, Any]]:
  """Validates every stage and the teacher references between them; returns [(name, config)].

  With `resolve` (the default), every stage's datasets, transforms and models are also resolved
  (`kd_jax.train.preflight`), so a mistake in the last stage fails before the first one trains.
  A top-level `settings` dict may hold values the stages share by reference (FieldReferences),
  so that one `--config.settings.<key>=...` override reaches every stage; it is not run.
  """
  unknown = set(config.keys()) - {"stages", "stage_order", "settings", "choices"}
  if unknown:
    raise ValueError(
        f"A staged config holds only `stages`, `stage_order`, `settings` and `choices`; "
        f"unknown top-level key(s) {sorted(unknown)} (put them inside a stage)."
    )
  # ConfigDict iterates keys sorted, so the run order is explicit.
  order = list(config.get("stage_order", ()))
  if sorted(order) != sorted(config.stages.keys()):
    raise ValueError(
        f"stage_order {order} must list every stage of `stages` "
        f"{sorted(config.stages.keys())} exactly once."
    )
  stages = [(stage, validate(config.stages[stage], name=f"stage {stage!r}")) for stage in order]
  seen = {}
  for stage, stage_config in stages:
    for index, teacher in enumerate(teacher_specs(stage_config)):
      if teacher.get("pretrained", False):
        continue
      if teacher.workdir in seen:
        _check_teacher_matches_stage(
            stage,
            index,
            teacher,
            teacher.workdir,
            seen[teacher.workdir],
            num_classes=stage_config.num_classes,
        )
      elif teacher.workdir in dict(stages):
        raise ValueError(
            f"stage {stage!r}: teachers[{index}] uses stage {teacher.workdir!r}, "
            "which runs later; order the stages so teachers come first."
        )
    init = init_from_lib.spec(stage_config)
    if init and init["workdir"] in dict(stages) and init["workdir"] not in seen:
      raise ValueError(
          f"stage {stage!r}: init_from uses stage {init['workdir']!r}, which does not run "
          "before it; order the stages so the run it starts from comes first."
      )
    seen[stage] = stage_config
  choices.validate(config, order, dict(stages))
  if resolve:
    from kd_jax.train import preflight  # pylint: disable=g-import-not-at-top  (import cycle)

    preflight.check_stages(stages)
  return stages


def _check_teacher_matches_stage(
    stage: str, index: int, teacher, teacher_stage: str, teacher_config, *, num_classes: int
) -> None:
  problems = []
  if teacher_config.num_classes != num_classes:
    problems.append(f"num_classes {num_classes} vs {teacher_config.num_classes}")
  if teacher.model != teacher_config.model:
    problems.append(f"model {teacher.model!r} vs {teacher_config.model!r}")
  if dict(teacher.model_kwargs) != dict(teacher_config.model_kwargs):
    problems.append(
        f"model_kwargs {dict(teacher.model_kwargs)} vs " f"{dict(teacher_config.model_kwargs)}"
    )
  if problems:
    raise ValueError(
        f"stage {stage!r}: teachers[{index}] does not match the run of stage "
        f"{teacher_stage!r} that trains it: " + "; ".join(problems) + "."
    )


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


_LATER_OPTIMIZER_KEYS = {"restart_steps": 0, "hold_steps": 1}  # with their defaults


def portable(config_json: dict, workdir: str) -> dict:
  """A run config as saved in WORKDIR/config.json: teacher (and init_from) workdirs of sibling
  stages relative; `init_from` left out when unset.

  A staged run hands its stages absolute teacher paths (WORKDIR/teacher); saved as such, moving
  the workdir would make every resume look like a changed config. Teachers inside the parent of
  `workdir` (the stages of one staged run) are therefore stored relative to `workdir`
  ("../teacher"); other paths stay as given. Applied to both sides of the resume comparison, an
  old config that still holds absolute paths of the same place compares equal.

  Args:
    config_json: the config as a JSON-able dict (e.g. `json.loads(config.to_json())`).
    workdir: the run's own workdir.
  """
  out = dict(config_json)
  root = os.path.dirname(os.path.abspath(workdir))
  teachers = []
  for teacher in out.get("teachers") or ():
    teacher = dict(teacher)
    path = teacher.get("workdir")
    if isinstance(path, str) and os.path.isabs(path):
      path = os.path.normpath(path)
      if os.path.commonpath([root, path]) == root:
        teacher["workdir"] = os.path.relpath(path, os.path.abspath(workdir))
    teachers.append(teacher)
  if "teachers" in out:
    out["teachers"] = teachers
  if isinstance(out.get("optimizer"), dict):
    # Keys added after workdirs existed are saved only when set, as `init_from` below.
    out["optimizer"] = {
        k: v
        for k, v in out["optimizer"].items()
        if not (k in _LATER_OPTIMIZER_KEYS and v == _LATER_OPTIMIZER_KEYS[k])
    }
  init = out.get("init_from")
  if not init:
    # Saved only when set, so the config.json of a run made before `init_from` existed still
    # compares equal on resume.
    out.pop("init_from", None)
  else:
    init = dict(init)
    path = init.get("workdir")
    if isinstance(path, str) and os.path.isabs(path):
      path = os.path.normpath(path)
      if os.path.commonpath([root, path]) == root:
        init["workdir"] = os.path.relpath(path, os.path.abspath(workdir))
    out["init_from"] = init
  return out


def listify(value: Any) -> Any:
  """Tuples to lists recursively, so a config compares equal to its JSON round trip."""
  if isinstance(value, dict):
    return {k: listify(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [listify(v) for v in value]
  return value
