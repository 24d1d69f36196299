"""Teacher outputs computed once per run, looked up by example index instead of recomputed.

A frozen teacher applied to the same input gives the same output, so for *deterministic* views
(no random augmentation, no batch-level mixing) its outputs on the train split can be computed
once before step 0 and gathered by each batch's example index (`batch["index"]`, added by the
train loader) inside the jitted step: the teacher's forward pass leaves the step. The cache holds
exactly the outputs the method reads (`Method.requested_outputs`), saved in
WORKDIR/teacher_cache/ like constants (checksummed, reloaded on resume). Under random
augmentation a cache keyed by example index would hand the student the teacher's output on a
different view, so that combination is refused.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import jax
import numpy as np

from kd_jax.data.pipeline import INDEX_KEY
from kd_jax.train import constants as constants_lib
from kd_jax.train import prepare

NAME = "teacher_cache"


def check_cacheable(config, method, train_transforms: Sequence[Any]) -> None:
  """One clear error when a cache would be wrong or useless for this run."""
  if not method.uses_teacher:
    raise ValueError(
        f"teacher_cache=True but method {config.method.name!r} does not run the "
        "teachers in training: there is nothing to cache."
    )
  if config.batch_transforms:
    raise ValueError(
        "teacher_cache=True with batch_transforms (e.g. MixUp): the teachers see a "
        "different mixed input every step, which a cache keyed by example index "
        "cannot hold; turn the cache off."
    )
  random = [
      getattr(t, "__name__", type(t).__name__)
      for t in train_transforms
      if not getattr(t, "deterministic", False)
  ]
  if random:
    raise ValueError(
        f"teacher_cache=True needs deterministic train transforms, but {random} "
        "may draw random augmentation (transforms mark themselves with "
        "`deterministic = True`); a cache keyed by example index would give the "
        "teacher's output on another view. Turn the cache off."
    )


def compute(
    teacher_outputs: Callable[[dict], tuple], batches: Iterable[dict]
) -> dict[str, np.ndarray]:
  """{"<teacher>/<output>": [N, ...]} over the ordered train split (row i = example i)."""

  def flat_outputs(batch):
    out = {}
    for member, outputs in enumerate(teacher_outputs(batch)):
      for key, value in outputs.items():
        if value is None:
          continue
        if not hasattr(value, "shape"):
          raise ValueError(
              f"teacher_cache holds arrays with a batch axis; the method reads the "
              f"teacher output {key!r}, a {type(value).__name__} (e.g. per-layer "
              "features): turn the cache off for it."
          )
        out[f"{member}/{key}"] = value
    return out

  return prepare.map_batches(jax.jit(flat_outputs), batches, description="teacher cache")


def load_or_compute(
    workdir: str, fingerprint: dict, compute_fn: Callable[[], dict], *, save: bool
) -> dict[str, dict[str, np.ndarray]]:
  """{"<teacher>": {"<output>": [N, ...]}}, reloaded (and verified) or computed and saved."""
  if constants_lib.exists(workdir, name=NAME):
    return constants_lib.load(workdir, fingerprint, name=NAME)
  print("Caching the teachers' outputs on the train split (once per run) ...", flush=True)
  cache = constants_lib.unflatten(compute_fn())
  if save:
    constants_lib.save(workdir, cache, fingerprint, name=NAME)
  return cache


def lookup(cache: dict, batch: dict) -> tuple:
  """The teachers' outputs for this batch: a tuple with one dict per teacher (inside jit)."""
  if INDEX_KEY not in batch:
    raise ValueError(
        "teacher_cache needs batch['index'] (the train loader adds it when the " "cache is on)."
    )
  index = batch[INDEX_KEY]
  members = sorted(cache, key=int)
  return tuple(
      jax.tree.map(lambda a: jax.lax.stop_gradient(a[index]), dict(cache[m])) for m in members
  )
