"""From a validated config to the objects the loop runs: models, teachers, data, optimiser.

Names resolve through the library's registries (`kd_jax.models.get_model`,
`kd_jax.data.get_source`); a value "package.module:attribute" imports a callable instead, so
experiments and tests can plug in their own model or data source without touching the trainer.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from typing import Any, Callable, Iterable, Iterator, Sequence

import flax.linen as nn
import jax
import numpy as np
import optax
from absl import logging

from kd_jax import methods
from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import config as config_lib
from kd_jax.train import config_json
from kd_jax.train import guards
from kd_jax.train import pretrained_teachers
from kd_jax.train import workdir_config

PyTree = Any


def resolve_callable(spec: str) -> Callable[..., Any]:
  """'package.module:attribute' -> the attribute."""
  module_name, _, attribute = spec.partition(":")
  try:
    return getattr(importlib.import_module(module_name), attribute)
  except (ImportError, AttributeError) as error:
    raise ValueError(f"Cannot import {spec!r}: {error}") from error


def build_model(name: str, num_classes: int, model_kwargs: dict, *, dtype=None) -> nn.Module:
  """`num_classes` and the compute `dtype` (bfloat16 runs) are passed unless model_kwargs set them.

  The models keep float32 params and compute in their `dtype` field (flax convention).
  """
  kwargs = {"num_classes": num_classes, **dict(model_kwargs)}
  if dtype is not None:
    kwargs.setdefault("dtype", dtype)
  if ":" in name:
    factory = resolve_callable(name)
  else:
    from kd_jax import models  # pylint: disable=g-import-not-at-top

    factory = functools.partial(models.get_model, name)
  try:
    return factory(**kwargs)
  except (TypeError, ValueError, KeyError) as error:
    raise ValueError(f"Cannot build model {name!r} with {kwargs}: {error}") from error


def data_api():
  """The data package (sources, loaders, transforms), imported lazily: TFDS is slow to import."""
  from kd_jax import data  # pylint: disable=g-import-not-at-top

  return data


def _resolve_transform(spec: Any, api, *, batch_level: bool) -> Callable:
  """A transform from its config entry.

  Entries: a callable; "package.module:attribute" (used as is); a name of `kd_jax.data`
  (classes such as "PadCropFlip" are instantiated without arguments, functions such as "mixup"
  used as is); or a dict {"name": ..., **kwargs} — classes get the kwargs as constructor
  arguments, functions as keyword arguments bound with `functools.partial`.
  Per-example transforms are `(example, rng) -> example`, batch transforms `(batch, rng) -> batch`.
  """
  if callable(spec):
    return spec
  kwargs = {}
  if isinstance(spec, str) and ":" in spec:
    return resolve_callable(spec)
  if not isinstance(spec, str):
    kwargs = dict(spec)
    if "name" not in kwargs:
      raise ValueError(f"Transform {kwargs} needs a 'name'.")
    spec = kwargs.pop("name")
  target = getattr(api, spec, None)
  if target is None:
    kind = "batch transform" if batch_level else "transform"
    raise ValueError(
        f"Unknown {kind} {spec!r}: not in {api.__name__}; give a name from there "
        "or 'package.module:callable'."
    )
  if isinstance(target, type):
    return target(**kwargs)
  return functools.partial(target, **kwargs) if kwargs else target


def _transforms(specs: Sequence[Any], api, *, batch_level: bool = False) -> list[Callable]:
  return [_resolve_transform(spec, api, batch_level=batch_level) for spec in specs]


def batch_transform(config) -> Callable[[dict, int], dict]:
  """Host-side batch transforms (e.g. MixUp), seeded by (seed, step) so a resumed run redraws
  exactly the same mixing; identity when none are configured."""
  transforms = _transforms(config.batch_transforms, data_api(), batch_level=True)

  def apply(batch: dict, step: int) -> dict:
    rng = np.random.default_rng([config.seed, step])
    for transform in transforms:
      batch = transform(batch, rng)
    return batch

  return apply


def get_source(config, split: str):
  """`kd_jax.data.get_source`: registered names, "csv:PATH?..." files, "package.module:fn"."""
  return data_api().get_source(
      config.dataset, split, data_dir=config.data_dir, manual_dir=config.manual_dir
  )


@dataclasses.dataclass
class Data:
  """The run's data: a per-host train iterator and fresh ordered passes over any split.

  batches(split, sharded=True): eval-transformed, padded batches with a "mask"; sharded: this
  host's contiguous slice (per-example metrics on the mesh), else the whole split on every host
  (whole-split work: `Method.prepare`, kNN / probe / retrieval evaluators).
  """

  train_iter: Iterator[dict]
  batches: Callable[..., Iterable[dict]]
  num_train_examples: int
  eval_split: str
  train_transforms: Sequence[Callable]
  train_source: Any = None

  def eval_batches(self) -> Iterable[dict]:
    return self.batches(self.eval_split)


def build_data(config) -> Data:
  """Per-host train iterator (global batch / process count) and a pass factory for any split."""
  api = data_api()
  train_source = get_source(config, config.train_split)
  sources = {config.train_split: train_source}
  per_host_batch = config.batch_size // jax.process_count()
  train_transforms = _transforms(config.train_transforms, api)
  train_iter = api.train_loader(
      train_source,
      batch_size=per_host_batch,
      seed=config.seed,
      transforms=train_transforms,
      shard_index=jax.process_index(),
      shard_count=jax.process_count(),
      with_index=config.teacher_cache,
  )
  eval_transforms = _transforms(config.eval_transforms, api)

  def batches(split: str, sharded: bool = True, *, train_view: bool = False):
    """train_view: the train transforms instead of the eval ones (the teacher cache)."""
    if split not in sources:
      sources[split] = get_source(config, split)
    if not sharded:
      return api.eval_batches(
          sources[split],
          batch_size=config.eval_batch_size,
          transforms=train_transforms if train_view else eval_transforms,
          shard_index=0,
          shard_count=1,
      )
    # Each host reads its own contiguous slice of the split.
    return api.eval_batches(
        sources[split],
        batch_size=config.eval_batch_size // jax.process_count(),
        transforms=eval_transforms,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    )

  return Data(
      train_iter, batches, len(train_source), config.eval_split, train_transforms, train_source
  )


def build_optimizer(opt, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The student optimiser and its learning-rate schedule (cosine, with warm restarts every
  `restart_steps`, or constant; linear warmup; held over blocks of `hold_steps`)."""
  decay_steps = max(total_steps - opt.warmup_steps, 1)
  restart_steps, hold_steps = opt.get("restart_steps", 0), opt.get("hold_steps", 1)
  if opt.schedule == "cosine":
    period = restart_steps or decay_steps
    cosine = optax.cosine_decay_schedule(
        opt.learning_rate, period, alpha=opt.end_learning_rate / opt.learning_rate
    )
    main = (lambda count: cosine(count % period)) if restart_steps else cosine
  else:
    main = optax.constant_schedule(opt.learning_rate)
  schedule = main
  if opt.warmup_steps:
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, opt.learning_rate, opt.warmup_steps), main], [opt.warmup_steps]
    )
  if hold_steps > 1:
    unheld = schedule
    schedule = lambda count: unheld(count // hold_steps * hold_steps)
  # Weight decay on kernels only (ndim > 1): decaying BatchNorm scales and biases hurts.
  kernels = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  if opt.name == "adamw":
    return optax.adamw(schedule, weight_decay=opt.weight_decay, mask=kernels), schedule
  parts = []
  if opt.weight_decay:
    parts.append(optax.add_decayed_weights(opt.weight_decay, mask=kernels))
  if opt.name == "sgd":
    parts.append(optax.sgd(schedule, momentum=opt.momentum or None, nesterov=opt.nesterov))
  else:
    parts.append(optax.adam(schedule))
  return optax.chain(*parts), schedule


def build_teachers(
    config, example_input, *, dtype=None
) -> tuple[tuple[nn.Module, ...], tuple[PyTree, ...], tuple[int, ...]]:
  """Frozen teacher modules, their variables (params and BatchNorm statistics only: never the
  teacher run's optimiser or method state) and checkpoint steps, from each teacher workdir; a
  `pretrained` teacher is initialised on `example_input` and loads its own weights (step 0)."""
  modules, variables, steps = [], [], []
  for index, spec in enumerate(config_lib.teacher_specs(config)):
    module = build_model(spec.model, config.num_classes, spec.model_kwargs, dtype=dtype)
    modules.append(module)
    if spec.get("pretrained", False):
      with jax.threefry_partitionable(False):
        initial = jax.jit(lambda key, x: module.init(key, x, train=False))(
            jax.random.key(0), example_input
        )
      step, teacher_variables = 0, pretrained_teachers.load(config, index, spec, module, initial)
      source = f"{spec.model} (pretrained)"
    else:
      _check_teacher_run(index, spec, config)
      workdir_config.check_data(config, spec.workdir, where=f"teachers[{index}] ({spec.workdir})")
      step, teacher_variables = checkpoint_lib.restore_exported_variables(spec.workdir)
      source = spec.workdir
    guards.check_finite_variables(teacher_variables, f"teachers[{index}] ({source})")
    logging.info("Teacher %d: %s from %s (step %d).", index, spec.model, source, step)
    variables.append(teacher_variables)
    steps.append(step)
  return tuple(modules), tuple(variables), tuple(steps)


def _check_teacher_run(index: int, spec, config) -> None:
  """The teacher's own run config (WORKDIR/config.json) must describe the same network."""
  path = os.path.join(spec.workdir, "config.json")
  if not os.path.exists(path):
    return
  saved = workdir_config.read_json(path)
  expected = {
      "model": spec.model,
      "model_kwargs": dict(spec.model_kwargs),
      "num_classes": config.num_classes,
  }
  found = {key: saved.get(key) for key in expected}
  if config_json.listify(found) != config_json.listify(expected):
    raise ValueError(
        f"teachers[{index}] is declared as {expected} but the run in "
        f"{spec.workdir} trained {found}."
    )


def check_teacher_shapes(config, teachers, teacher_variables, x) -> None:
  """Each teacher's restored params must have the shapes its module creates (one clear line
  naming the teacher and the first mismatch, instead of a shape error deep inside flax)."""
  specs = config_lib.teacher_specs(config)
  for index, (module, variables) in enumerate(zip(teachers, teacher_variables)):
    expected = jax.eval_shape(lambda x, m=module: m.init(jax.random.key(0), x, train=False), x)
    want = {
        jax.tree_util.keystr(p): tuple(l.shape)
        for p, l in jax.tree_util.tree_leaves_with_path(expected["params"])
    }
    have = {
        jax.tree_util.keystr(p): tuple(l.shape)
        for p, l in jax.tree_util.tree_leaves_with_path(variables["params"])
    }
    if want != have:
      differ = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
      first = differ[0]
      raise ValueError(
          f"teachers[{index}] ({specs[index].model} {dict(specs[index].model_kwargs)}) does not "
          f"match the checkpoint in {specs[index].workdir}: {len(differ)} parameter(s) differ, "
          f"e.g. {first} is {have.get(first, 'absent')} in the checkpoint and "
          f"{want.get(first, 'absent')} in the model; declare the teacher as it was trained."
      )


def build_method(config) -> methods.Method:
  return methods.get_method(**config.method.to_dict())
