"""Starting a run's student from another finished run (`config.init_from`).

    c.init_from = {"workdir": "ce_s0"}                      # a stage of this config, or a path
    c.init_from = {"workdir": "/runs/ce", "checkpoint": "last"}
    c.init_from = {"workdir": "ce_s0", "interpolate": {"with": "random", "weight": 0.5}}

The student's params *and* its other model collections (BatchNorm statistics) are copied from
the source run; the optimiser, the method's own variables (an adapter, a gate) and the step
start fresh. Which state of the source is read (`checkpoint`):
  "selected" (default): the state the source's results.json reports — WORKDIR/best/ when its
    `model_selection` chose one on validation, else its newest checkpoint (its last step);
  "last": its newest checkpoint, whatever a selection chose.
`interpolate` {"with": "random", "weight": λ} starts from θ = λ·θ_loaded + (1 − λ)·θ_init, θ_init
being this run's own random initialisation (its seed); the other collections (BatchNorm
statistics) are the loaded ones. λ = 1 is the plain copy.

This is not `model_kwargs.init_from` of the BERT models ("minilm" / "scratch" / a Hugging Face
directory), which chooses pretrained weights inside the model; errors here say `config.init_from`.

The copy happens once, at step 0: a resumed run restores its own checkpoint and never reads the
source again (`loop` skips the load when the workdir has checkpoints). Shapes are compared before
anything is copied; a mismatch is one line naming both models and the first differing array.
The source must have finished (its results.json exists): half-trained weights would otherwise
start the run without a word. What was loaded is written to WORKDIR/init_from.json and copied
into results.json.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any
KEYS = {"workdir", "checkpoint", "interpolate"}
CHECKPOINTS = ("selected", "last")
RECORD_FILE = "init_from.json"


def spec(config) -> dict | None:
  """The checked `config.init_from` as a plain dict with defaults filled in, or None when unset.

  Raises:
    ValueError: one line naming the bad key or value.
  """
  raw = config.get("init_from")
  raw = {} if raw is None else dict(raw)
  if not raw:
    return None
  where = "config.init_from (the student's starting weights; not model_kwargs.init_from)"
  unknown = sorted(set(raw) - KEYS)
  if unknown:
    raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(KEYS)}.")
  workdir = raw.get("workdir")
  if not isinstance(workdir, str) or not workdir:
    raise ValueError(
        f"{where} needs a 'workdir' (a finished run or a stage name), got {workdir!r}."
    )
  checkpoint = raw.get("checkpoint", "selected")
  if checkpoint not in CHECKPOINTS:
    raise ValueError(f"{where}: checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}.")
  interpolate = raw.get("interpolate")
  if interpolate is not None:
    interpolate = dict(interpolate)
    weight = interpolate.get("weight")
    if (
        set(interpolate) != {"with", "weight"}
        or interpolate["with"] != "random"
        or isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or not math.isfinite(weight)
        or not 0 <= weight <= 1
    ):
      raise ValueError(
          f'{where}: interpolate must be {{"with": "random", "weight": λ}} with λ in [0, 1], '
          f"got {interpolate!r}."
      )
  return {"workdir": workdir, "checkpoint": checkpoint, "interpolate": interpolate}


def _source_config(workdir: str) -> dict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def describe_model(model: str, model_kwargs: Any) -> str:
  kwargs = dict(model_kwargs or {})
  return f"{model} {kwargs}" if kwargs else str(model)


def _leaf_shapes(tree: PyTree) -> dict[str, tuple]:
  return {
      jax.tree_util.keystr(path): tuple(leaf.shape)
      for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }


def shape_mismatch(expected: PyTree, loaded: PyTree) -> str | None:
  """'<path>: <loaded shape> saved vs <expected shape> in the model (N arrays differ)', or None.

  Arrays are compared by path over every collection (params, batch_stats, ...); an array
  present on one side only counts as a difference ("absent")."""
  want, have = _leaf_shapes(expected), _leaf_shapes(loaded)
  # Params first: they name the layer; BatchNorm statistics follow them.
  differ = sorted(
      (k for k in set(want) | set(have) if want.get(k) != have.get(k)),
      key=lambda k: (not k.startswith("['params']"), k),
  )
  if not differ:
    return None
  first = differ[0]
  return (
      f"{first} is {have.get(first, 'absent')} in the checkpoint and "
      f"{want.get(first, 'absent')} in the model ({len(differ)} array(s) differ)"
  )


def mismatch_error(student: str, source: str, where: str, problem: str) -> ValueError:
  return ValueError(
      f"config.init_from: the student {student} cannot start from {source} in {where}: {problem}."
  )


def selected_directory(workdir: str, checkpoint: str) -> tuple[str, str, int | None]:
  """(directory whose checkpoints/ holds the state to read, what it is, the step it must be)."""
  if checkpoint == "selected":
    selection = os.path.join(workdir, "best", "selection.json")
    if os.path.exists(selection):
      with open(selection) as f:
        record = json.load(f)
      if record.get("step") is not None:
        what = f"best on {record['evaluator']}.{record['metric']}"
        return os.path.join(workdir, "best"), what, int(record["step"])
  return workdir, "last", None


def load(init, student_variables: PyTree, *, student: str) -> tuple[PyTree, dict]:
  """(the student's starting variables, the record of what was loaded).

  Args:
    init: `spec(config)` with `workdir` already absolute (a stage name resolved by the stages).
    student_variables: this run's freshly initialised {"params", "batch_stats", ...}; fixes the
      expected structure and shapes, and is the random end of an interpolation.
    student: how errors name this run's model (`describe_model`).
  """
  from kd_jax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from kd_jax.train import guards  # pylint: disable=g-import-not-at-top

  workdir = init["workdir"]
  if not os.path.exists(os.path.join(workdir, "results.json")):
    raise FileNotFoundError(
        f"config.init_from: {workdir} has no results.json — that run has not finished (or does "
        "not exist); finish it before starting from it."
    )
  saved = _source_config(workdir)
  source = describe_model(saved.get("model", "<unknown model>"), saved.get("model_kwargs"))
  directory, which, expected_step = selected_directory(workdir, init["checkpoint"])
  step, loaded = checkpoint_lib.restore_exported_variables(
      directory, missing="it holds no checkpoint to start from", role="the init_from source's"
  )
  if expected_step is not None and step != expected_step:
    raise FileNotFoundError(
        f"config.init_from: {directory} should hold the step {expected_step} its selection.json "
        f"names, but its newest checkpoint is step {step}."
    )
  problem = shape_mismatch(student_variables, loaded)
  if problem:
    raise mismatch_error(student, source, workdir, problem)
  guards.check_finite_variables(loaded, f"config.init_from ({workdir})")
  # Same dtypes as the run's own variables; fresh buffers, since the train step donates them.
  loaded = jax.tree.map(lambda a, like: jnp.array(a, dtype=like.dtype), loaded, student_variables)
  weight = None
  if init["interpolate"] is not None:
    weight = float(init["interpolate"]["weight"])
    loaded = dict(loaded)
    loaded["params"] = jax.tree.map(
        lambda a, b: weight * a + (1 - weight) * b, loaded["params"], student_variables["params"]
    )
  record = {
      "workdir": workdir,
      "model": source,
      "checkpoint": init["checkpoint"],
      "state": which,
      "step": int(step),
      "interpolate_weight": weight,
  }
  return loaded, record


def write_record(workdir: str, record: dict) -> None:
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, RECORD_FILE), "w") as f:
      json.dump(record, f, indent=2)


def read_record(workdir: str) -> dict | None:
  path = os.path.join(workdir, RECORD_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)
