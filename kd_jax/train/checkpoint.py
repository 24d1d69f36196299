"""Orbax checkpoints of the train state plus the data-iterator position.

Layout: WORKDIR/checkpoints/<step>/{state, data_iterator}. `state` is the whole `TrainState`
(params, optimiser, model state, method state, RNG, step) through `StandardSave`; the iterator
state (grain's `get_state()`) is written by a small handler, one JSON file per process, because
on a multi-host run every host reads a different shard and has its own position (grain's own
orbax handler does the same, but only accepts grain iterator classes).

Each step also holds `checksums` (JSON, written by process 0): a hash of every array of the
state, taken from the host copy at save time (`kd_jax.train.integrity`), because bytes flipped
inside compressed array data decode without any error. The iterator files carry their own hash.

Resuming tries the newest step first. A step that fails to restore (truncated file, corrupt
array, checksum mismatch) is reported, moved aside to WORKDIR/checkpoints_broken/ — never
deleted and never silently overwritten by the re-run that reaches that step again — and the
previous step is used. Read-only restores (a teacher, a report) verify too and fail with one
clear line instead of falling back: an older checkpoint would be a different teacher.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import time
from typing import Any, NamedTuple, Optional

import jax
import orbax.checkpoint as ocp
from etils import epath

from kd_jax.train import guards
from kd_jax.train import integrity
from kd_jax.train import mesh as mesh_lib
from kd_jax.train.integrity import CorruptCheckpointError

PyTree = Any


class IteratorStateHandler(ocp.CheckpointHandler):
  """Saves an iterator position (JSON-able dict or bytes) as process_<i>-of-<n>.json."""

  def _filename(self, directory: epath.Path) -> epath.Path:
    return directory / f"process_{jax.process_index()}-of-{jax.process_count()}.json"

  def save(self, directory: epath.Path, args: "IteratorStateSave"):
    state = args.state
    # grain's DataLoader iterators return JSON as bytes, dataset iterators a dict.
    payload = {"bytes": state.decode("utf-8")} if isinstance(state, bytes) else {"json": state}
    payload["checksum"] = integrity.payload_checksum(json.dumps(payload, sort_keys=True))
    directory.mkdir(parents=True, exist_ok=True)
    self._filename(directory).write_text(json.dumps(payload))

  def restore(self, directory: epath.Path, args: Optional["IteratorStateRestore"] = None):
    del args
    filename = self._filename(directory)
    if not filename.exists():
      raise FileNotFoundError(
          f"{filename} is missing: the checkpoint was written by a different number of "
          "processes or is incomplete."
      )
    try:
      payload = json.loads(filename.read_text())
      saved_checksum = payload.pop("checksum", None)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
      raise CorruptCheckpointError(f"{filename} is not a valid iterator state: {error}") from error
    if saved_checksum is not None and (
        saved_checksum != integrity.payload_checksum(json.dumps(payload, sort_keys=True))
    ):
      raise CorruptCheckpointError(
          f"{filename}: checksum mismatch (the iterator position "
          "changed on disk after it was saved)."
      )
    return payload["bytes"].encode("utf-8") if "bytes" in payload else payload["json"]

  def metadata(self, directory: epath.Path):
    del directory
    return None

  def finalize(self, directory: epath.Path):
    del directory

  def close(self):
    pass


@ocp.args.register_with_handler(IteratorStateHandler, for_save=True)
@dataclasses.dataclass
class IteratorStateSave(ocp.args.CheckpointArgs):
  state: Any


@ocp.args.register_with_handler(IteratorStateHandler, for_restore=True)
@dataclasses.dataclass
class IteratorStateRestore(ocp.args.CheckpointArgs):
  pass


class Restored(NamedTuple):
  step: int
  state: PyTree
  iterator_state: Any


class Checkpointer:
  """Periodic and final checkpoints, keeping the newest `max_to_keep`."""

  def __init__(self, workdir: str, *, max_to_keep: int = 3, async_save: bool = True):
    if max_to_keep < 1:
      raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}.")
    self.directory = epath.Path(workdir) / "checkpoints"
    self.broken_directory = epath.Path(workdir) / "checkpoints_broken"
    options = ocp.CheckpointManagerOptions(
        create=True,
        enable_async_checkpointing=async_save,
        preservation_policy=ocp.checkpoint_managers.LatestN(max_to_keep),
    )
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: PyTree, iterator_state: Any) -> None:
    """Saves `state` and the iterator position at `step` (async: returns before it is on disk).

    The iterator state must be taken *now* (the caller passes `get_state()`'s result, not the
    iterator), since the iterator keeps moving while an async save is still writing.
    """
    # Hashed from a host copy now, before the next step donates (overwrites) the state buffers.
    checksums = integrity.record(state)
    self.manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data_iterator=IteratorStateSave(iterator_state),
            checksums=ocp.args.JsonSave(checksums),
        ),
        force=True,
    )

  def restore_latest(self, abstract_state: PyTree) -> Optional[Restored]:
    """Newest readable checkpoint, or None when there is none (a fresh run).

    Raises RuntimeError when checkpoints exist but none of them restores.

    Args:
      abstract_state: a pytree like the state (arrays, or `jax.ShapeDtypeStruct`s with
        shardings); it fixes structure, dtypes and placement, so a run saved on 8 devices
        resumes on 1 and vice versa.
    """
    steps = self.all_steps()
    for step in reversed(steps):
      try:
        items = dict(
            state=ocp.args.StandardRestore(abstract_state), data_iterator=IteratorStateRestore()
        )
        verified = _has_checksums(self.directory / str(step))
        if verified:
          items["checksums"] = ocp.args.JsonRestore()
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        where = f"checkpoint step {step} in {self.directory}"
        if verified:
          integrity.verify(restored["state"], restored["checksums"], where=where)
        else:
          _warn_unverified(where)
        _check_finite(restored["state"], where)
        return Restored(step, restored["state"], restored["data_iterator"])
      except Exception as error:  # pylint: disable=broad-except  (any failure => try older)
        self._set_aside(step, error)
    if steps:
      # Starting from scratch here would quietly throw away the run (e.g. after a code change
      # that altered the state's structure); make the user decide.
      raise RuntimeError(
          f"None of the checkpoints {steps} in {self.directory} could be restored; they were "
          f"moved to {self.broken_directory} (see the errors above). Re-run to start from "
          "scratch in this workdir, or restore them by hand."
      )
    return None

  def _set_aside(self, step: int, error: Exception) -> None:
    destination = self.broken_directory / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(
        f"WARNING: checkpoint step {step} in {self.directory} failed to restore "
        f"({type(error).__name__}: {error}); moved to {destination}, trying the previous one.",
        flush=True,
    )
    if jax.process_index() == 0:
      self.broken_directory.mkdir(parents=True, exist_ok=True)
      shutil.move(str(self.directory / str(step)), str(destination))
    ocp.multihost.sync_global_processes(f"kd_jax_set_aside_{step}")  # all hosts see the move
    self.manager.reload()

  def reached_preemption(self, step: int) -> bool:
    """True at the step all hosts agreed to stop at after a preemption notice (multi-host)."""
    return self.manager.reached_preemption(step)

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def _check_finite(state: PyTree, where: str) -> None:
  """A checkpoint of a diverged state is no good checkpoint, however sound its bytes: the loop
  never saves one, so it was written otherwise (an older kd_jax, a copy, a hand edit)."""
  bad = guards.non_finite_leaves(state, infinity_allowed_under=("opt_state",))
  if bad:
    raise CorruptCheckpointError(
        f"{where} holds non-finite values (NaN or inf) in {len(bad)} array(s), e.g. {bad[0]}, "
        "although its checksums match: it holds a diverged state, not a good checkpoint."
    )


def saved_steps(workdir: str) -> list[int]:
  """Steps with a checkpoint directory in WORKDIR/checkpoints (unverified; orbax's temporary
  directories of an interrupted save are not steps): whether a start is a resume."""
  directory = epath.Path(workdir) / "checkpoints"
  if not directory.exists():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _has_checksums(step_directory: epath.Path) -> bool:
  return (step_directory / "checksums").exists()


def _warn_unverified(where: str) -> None:
  print(
      f"WARNING: {where} has no checksums (written before kd_jax recorded them); its array "
      "data cannot be verified.",
      flush=True,
  )


class _ReadOnlyNotice(logging.Filter):
  """Drops orbax's "Given directory is read only=DIR" warning (absl logger, one per manager)."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Given directory is read only")


@contextlib.contextmanager
def _without_read_only_notice():
  # orbax warns whenever a manager is opened with read_only=True; every read-only restore here
  # (a teacher, `experiments.evaluate`, `kd_jax.predict`) asks for exactly that, so the warning
  # only alarms users. Scoped to the manager's construction: orbax's other warnings still show.
  notice, absl_logger = _ReadOnlyNotice(), logging.getLogger("absl")
  absl_logger.addFilter(notice)
  try:
    yield
  finally:
    absl_logger.removeFilter(notice)


def _read_only_manager(directory: epath.Path) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)
  with _without_read_only_notice():
    return ocp.CheckpointManager(
        directory,
        options=options,
        item_handlers={
            "state": ocp.PyTreeCheckpointHandler(),
            "data_iterator": IteratorStateHandler(),
            "checksums": ocp.JsonCheckpointHandler(),
        },
    )


def _restore_verified(workdir: str, select, *, missing: str, role: str) -> tuple[int, PyTree]:
  """(step, select(state)) of the newest checkpoint in `workdir`, read-only and verified.

  `select` maps the checkpoint's metadata tree to the subtree to read: orbax's partial restore
  then reads only those arrays (a teacher never reads the optimiser or method state). The target
  is placed replicated on this process's mesh, so a run saved on 8 devices loads on 1.

  Raises:
    FileNotFoundError: there is no checkpoint (`missing` completes the message).
    CorruptCheckpointError: the newest checkpoint cannot be read or fails its checksums.
  """
  directory = epath.Path(workdir) / "checkpoints"
  if not directory.exists():
    raise FileNotFoundError(f"No checkpoints in {directory}: {missing}.")
  manager = _read_only_manager(directory)
  try:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(f"No checkpoints in {directory}: {missing}.")
    where = f"{role} checkpoint step {step} in {directory}"
    try:
      sharding = mesh_lib.replicated(mesh_lib.make_mesh())
      target = jax.tree.map(
          lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
          select(dict(manager.item_metadata(step)["state"])),
      )
      items = {
          "state": ocp.args.PyTreeRestore(
              item=target,
              restore_args=ocp.checkpoint_utils.construct_restore_args(target),
              partial_restore=True,
          )
      }
      verified = _has_checksums(directory / str(step))
      if verified:
        items["checksums"] = ocp.args.JsonRestore()
      restored = manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as error:  # pylint: disable=broad-except  (TensorStore, orbax, KeyError)
      raise CorruptCheckpointError(
          f"Cannot read {where} ({type(error).__name__}: {str(error)[:300]}); re-run that "
          "run's own command in its workdir (it sets a broken step aside and resumes from the "
          "previous good one)."
      ) from error
    if verified:
      integrity.verify(restored["state"], restored["checksums"], where=where)
    else:
      _warn_unverified(where)
  finally:
    manager.close()
  return step, restored["state"]


def restore_latest_state(workdir: str, *, missing: str = "train it first") -> tuple[int, PyTree]:
  """(step, whole train state as nested dicts) of the newest checkpoint in `workdir`, verified."""
  return _restore_verified(workdir, lambda tree: tree, missing=missing, role="the")


def verify_latest(workdir: str) -> int:
  """Re-reads and re-verifies the newest checkpoint of a finished run; returns its step.

  For reports: results.json says what the run measured, this says the weights it measured are
  still the ones on disk. Raises CorruptCheckpointError (or FileNotFoundError) otherwise.
  """
  return restore_latest_state(workdir)[0]


def _student_variables(tree: dict) -> dict:
  selected = {"params": {"student": tree["params"]["student"]}}
  if jax.tree.leaves(tree.get("model_state", {})):
    selected["model_state"] = tree["model_state"]  # an empty subtree has nothing to read
  return selected


def restore_exported_variables(
    workdir: str, *, missing: str = "train the teacher first", role: str = "the teacher's"
) -> tuple[int, PyTree]:
  """The student variables {"params", **model_state} of the newest checkpoint in `workdir`.

  Used to load a finished run as a frozen teacher (or as a student's start, `init_from`): only
  `params["student"]` and `model_state` are read and verified (orbax partial restore), never the
  optimiser or method state, which can be several times larger. `missing` and `role` word the
  errors for the caller.
  """
  step, state = _restore_verified(workdir, _student_variables, missing=missing, role=role)
  return step, {"params": state["params"]["student"], **state.get("model_state", {})}
