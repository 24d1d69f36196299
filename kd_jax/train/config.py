"""The run configuration: every key the trainer understands with its default, and the views of
a validated config the engine reads (its evaluators in run order, its teachers).

Experiment files in `experiments/configs/` start from `default_config()` and change what they
need. `kd_jax.train.config_validation.validate` rejects keys the trainer does not know and
inconsistent settings before anything is trained; a config holding `stages` runs its named run
configs in order (`kd_jax.train.staged_config`). How a config is saved in a workdir and compared
on resume is `kd_jax.train.config_json`.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


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
