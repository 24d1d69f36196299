"""Teacher outputs computed once, looked up by example index instead of recomputed.

A frozen teacher applied to the same input gives the same output, so for *deterministic* views
(no random augmentation, no batch-level mixing) its outputs on the train split can be computed
once before step 0 and gathered by each batch's example index (`batch["index"]`, added by the
train loader) inside the jitted step: the teacher's forward pass leaves the step. The cache holds
exactly the outputs the method reads (`Method.requested_outputs`). Under random augmentation a
cache keyed by example index would hand the student the teacher's output on a different view, so
that combination is refused.

The cache is a memo of a pure function, so it is keyed by exactly what that function reads
(`fingerprint`): the teachers (architecture, checkpoint step and a digest of the weights as
cast to the compute dtype), the data the pass reads (dataset, split, its size and content
fingerprint — `kd_jax.data.fingerprint` —, the train transforms, e.g. a tokeniser's max_length, and the model input key), the compute dtype, the
batch size of the pass, the requested outputs, the backend and the JAX version. Nothing about
the student, the method's hyper-parameters or the seed enters: the pass runs over the split in
index order (`EvalBatches`, seed 0) with transforms that draw nothing, and the step looks rows up
by index, whatever order the seeded train stream visits them in. Runs with equal fingerprints
share one cache: it lives in CACHE_DIR/<hash of the fingerprint>/ (`config.teacher_cache_dir`,
default WORKDIR/teacher_cache; a staged run points all its stages at one shared directory), in
the format of the constants (`kd_jax.train.constants`: safetensors + manifest with the full
fingerprint and a SHA-256 per array, all verified on every load).

An entry only ever appears complete: it is written into a hidden temporary directory next to it
and renamed into place (atomic on POSIX), so a writer killed half-way leaves a temporary
directory that no lookup names, never a half entry that a later run trusts. Only process 0 of a
multi-process run writes; the others load an entry that exists (complete by construction) or
compute the outputs themselves, as they did with a per-run cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from typing import Any, Callable, Iterable, Sequence

import jax
import numpy as np

from kd_jax.data.pipeline import INDEX_KEY
from kd_jax.train import config as config_lib
from kd_jax.train import config_json
from kd_jax.train import constants as constants_lib
from kd_jax.train import prepare

NAME = "teacher_cache"  # WORKDIR/teacher_cache/ when config.teacher_cache_dir is empty
# Bumped when the layout or the meaning of the fingerprint changes: old entries are then missed
# (recomputed), never misread.
VERSION = 2


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


def _digest(variables) -> str:
  """SHA-256 of a teacher's variables (paths, dtypes, shapes, bytes), as the pass uses them.

  Hashing the weights rather than naming their checkpoint keeps the key right when a teacher
  workdir is retrained or moved; it costs ~0.15 s per 100 MB, against a pass over the split.
  """
  sha = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_leaves_with_path(variables):
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
      leaf = leaf.addressable_shards[0].data  # replicated over hosts: each shard is all of it
    array = np.ascontiguousarray(np.asarray(leaf))
    sha.update(f"{jax.tree_util.keystr(path)}:{array.dtype}{list(array.shape)};".encode())
    sha.update(array.tobytes())
  return sha.hexdigest()


def fingerprint(
    config,
    teacher_variables: Sequence[Any],
    teacher_steps: Sequence[int],
    teacher_outputs: Iterable[str],
    num_examples: int,
) -> dict:
  """Everything the cached outputs are a function of, and nothing else (see the module doc).

  `teacher_variables` are those the pass runs with (cast to the compute dtype). A teacher's
  workdir path is left out on purpose: the weights' digest identifies it wherever it lies.
  """
  as_json = json.loads(config.to_json())
  teachers = []
  specs = config_lib.teacher_specs(config)
  for spec, variables, step in zip(specs, teacher_variables, teacher_steps, strict=True):
    spec_json = json.loads(spec.to_json())
    teachers.append(
        {
            "model": spec.model,
            "model_kwargs": config_json.listify(spec_json.get("model_kwargs") or {}),
            "pretrained": bool(spec.get("pretrained", False)),
            "step": int(step),
            "variables_sha256": _digest(variables),
        }
    )
  return {
      "version": VERSION,
      "teachers": teachers,
      "num_classes": config.num_classes,
      "dataset": config.dataset,
      "data_dir": config.data_dir,
      "manual_dir": config.manual_dir,
      "train_split": config.train_split,
      # The content, not only the name: a user file edited since keeps name and size.
      "data": _data_fingerprint(config),
      "num_examples": int(num_examples),
      "train_transforms": config_json.listify(as_json["train_transforms"]),
      "input_key": config.input_key,
      "compute_dtype": config.compute_dtype,
      # The pass's batch shape: other shapes may compile to kernels that round differently.
      "batch_size": config.eval_batch_size,
      "teacher_outputs": sorted(teacher_outputs),
      "backend": jax.default_backend(),
      "jax_version": jax.__version__,
  }


def _data_fingerprint(config) -> dict:
  from kd_jax.data import fingerprint as data_fingerprint  # pylint: disable=g-import-not-at-top

  return data_fingerprint.fingerprint(
      config.dataset, (config.train_split,), data_dir=config.data_dir, manual_dir=config.manual_dir
  )


def key(fingerprint_: dict) -> str:
  """The entry's directory name: a hash of the canonical JSON of the fingerprint."""
  canonical = json.dumps(config_json.listify(fingerprint_), sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def directory(config, workdir: str) -> str:
  """The directory holding this run's entries: config.teacher_cache_dir or WORKDIR/teacher_cache."""
  return os.path.abspath(config.get("teacher_cache_dir") or os.path.join(workdir, NAME))


def compute(
    teacher_outputs: Callable[[dict], tuple], batches: Iterable[dict]
) -> dict[str, np.ndarray]:
  """{"<teacher>/<output>": [N, ...]} over the ordered train split (row i = example i)."""

  def flat_outputs(batch):
    out = {}
    for member, outputs in enumerate(teacher_outputs(batch)):
      for name, value in outputs.items():
        if value is None:
          continue
        if not hasattr(value, "shape"):
          raise ValueError(
              f"teacher_cache holds arrays with a batch axis; the method reads the "
              f"teacher output {name!r}, a {type(value).__name__} (e.g. per-layer "
              "features): turn the cache off for it."
          )
        out[f"{member}/{name}"] = value
    return out

  return prepare.map_batches(jax.jit(flat_outputs), batches, description="teacher cache")


def load_or_compute(
    cache_dir: str, fingerprint_: dict, compute_fn: Callable[[], dict], *, save: bool
) -> dict[str, dict[str, np.ndarray]]:
  """{"<teacher>": {"<output>": [N, ...]}}: the entry of `fingerprint_` in `cache_dir`, loaded
  and verified, or computed (and, with `save`, published there).

  Raises:
    constants_lib.ConstantsError: the entry exists but is corrupt or holds another fingerprint.
  """
  entry = key(fingerprint_)
  path = os.path.join(cache_dir, entry)
  if os.path.isdir(path):  # renamed into place complete: anything wrong with it is corruption
    print(f"Loading the teachers' outputs cached in {path}.", flush=True)
    try:
      return constants_lib.load(cache_dir, fingerprint_, name=entry)
    except constants_lib.ConstantsError as error:
      raise constants_lib.ConstantsError(f"Teacher cache refused: {error}") from None
  print(f"Caching the teachers' outputs on the train split in {path} ...", flush=True)
  flat = compute_fn()
  if save:
    _publish(cache_dir, entry, flat, fingerprint_)
  return constants_lib.unflatten(flat)


def _publish(cache_dir: str, entry: str, flat: dict, fingerprint_: dict) -> None:
  """Writes the entry into a hidden temporary directory, then renames it into place."""
  os.makedirs(cache_dir, exist_ok=True)
  temporary = f".{entry}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
  try:
    constants_lib.save(cache_dir, constants_lib.unflatten(flat), fingerprint_, name=temporary)
    os.rename(os.path.join(cache_dir, temporary), os.path.join(cache_dir, entry))
  except OSError:
    # Another writer published the same entry first (rename onto a non-empty directory fails):
    # equal fingerprints mean equal outputs, so theirs serves; otherwise a real I/O error.
    if not os.path.isdir(os.path.join(cache_dir, entry)):
      raise
  finally:
    shutil.rmtree(os.path.join(cache_dir, temporary), ignore_errors=True)


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
