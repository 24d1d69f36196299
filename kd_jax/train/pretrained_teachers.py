"""Teachers used as they come (`pretrained: True`) must really come with trained weights.

A pretrained teacher is initialised and then takes its weights from the module's
`load_pretrained(variables)`. Whatever that leaves at its random init is not knowledge: a model
built from scratch (`model_kwargs.init_from: scratch`, `model_kwargs.pretrained: False`) loads
nothing, and a pretrained encoder with a new task head (bert_classifier with num_classes) loads
everything but the head. The check compares the variables before and after `load_pretrained`,
module by module (a module whose every parameter is unchanged was not loaded), against what the
method reads: every module for a method that distils the teacher's logits, everything but the
head ("classifier") for one that reads only embeddings or features.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

HEAD = "classifier"  # the task head's name in kd_jax's models (bert, resnet, audio, moco)


def declared_random(spec) -> str | None:
  """Why a pretrained teacher's own model_kwargs make it random, or None (a config-level check)."""
  kwargs = dict(spec.get("model_kwargs") or {})
  if kwargs.get("init_from") == "scratch":
    return "its model_kwargs.init_from='scratch' builds it with random weights"
  if kwargs.get("pretrained", True) is False:
    return "its model_kwargs.pretrained=False builds it with random weights"
  return None


def reads_logits(config) -> bool:
  """Whether the run's method distils its teachers' logits (not only embeddings / features)."""
  from kd_jax import methods  # pylint: disable=g-import-not-at-top  (import cycle)

  method = methods.get_method(**config.method.to_dict())
  read = method.outputs if method.teacher_outputs is None else method.teacher_outputs
  return "logits" in read


def _random_modules(initial, loaded) -> tuple[list[str], int]:
  """(modules `load_pretrained` left at their random init, number of modules judged).

  A module is the parent of parameter leaves, e.g. "['layer_0']['attention']['query']". Only
  modules with a randomly initialised leaf are judged: a norm layer starts at ones and zeros, so
  finding it unchanged says nothing (a checkpoint may hold the same values).
  """
  keystr = jax.tree_util.keystr
  after = {keystr(p): leaf for p, leaf in jax.tree_util.tree_leaves_with_path(loaded["params"])}
  modules, random_init, changed = {}, set(), set()  # modules: an ordered set
  for path, leaf in jax.tree_util.tree_leaves_with_path(initial["params"]):
    module, leaf, other = keystr(path[:-1]), np.asarray(leaf), after.get(keystr(path))
    modules[module] = None
    if leaf.size and not np.all(leaf == leaf.flat[0]):
      random_init.add(module)
    if other is None or np.shape(other) != leaf.shape or not np.array_equal(leaf, other):
      changed.add(module)
  judged = [m for m in modules if m in random_init or m in changed]
  return [m for m in judged if m not in changed], len(judged)


def load(config, index: int, spec, module, initial) -> Any:
  """`module.load_pretrained(initial)`, refused in one line when weights the method reads stay
  random (see the module doc)."""
  name = f"teachers[{index}] ({spec.model} {dict(spec.get('model_kwargs') or {})})"
  fix = (
      "train or fine-tune it as a stage (a teacher with a workdir), or give a model whose "
      "load_pretrained supplies these weights."
  )
  if not hasattr(module, "load_pretrained"):
    raise ValueError(
        f"{name} is pretrained=True but has no load_pretrained(variables) to supply its "
        f"weights; {fix}"
    )
  loaded = module.load_pretrained(initial)
  random, total = _random_modules(initial, loaded)
  if random and len(random) == total:
    why = declared_random(spec) or "its load_pretrained returned the random init unchanged"
    raise ValueError(f"{name} is pretrained=True but {why}: a random teacher; {fix}")
  head = [m for m in random if m.startswith(f"['{HEAD}']")]
  body = [m for m in random if m not in head]
  if body:
    raise ValueError(
        f"{name} is pretrained=True but load_pretrained leaves {len(body)} of {total} "
        f"parameter module(s) at their random init (e.g. params{body[0]}); {fix}"
    )
  if head and reads_logits(config):
    raise ValueError(
        f"{name} is pretrained=True but its classifier head is new and random (load_pretrained "
        f"loads the rest), and method {config.method.name!r} distils the teacher's logits; "
        f"{fix}"
    )
  return loaded
