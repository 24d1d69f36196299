"""`train_and_evaluate(config, workdir)`: the generic loop for every method.

Order of events (big_vision / Flax examples style): validate the config and compare it with the
one saved in the workdir; build data, models, teachers and method; initialise the state on one
example batch; restore the newest good checkpoint (state + data-iterator position) if any; then
step → log → evaluate → checkpoint until `total_steps`; final evaluation written to
WORKDIR/results.json. A finished run restarted in its workdir only re-evaluates.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from kd_jax.train import build
from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import config as config_lib
from kd_jax.train import mesh as mesh_lib
from kd_jax.train import steps as steps_lib
from kd_jax.train import writers
from kd_jax.train.state import TrainState, create_train_state

# Keys that change only how a run reports, not what it computes: they may differ on resume.
_PRESENTATION_KEYS = ("progress_bar", "log_every", "eval_every", "async_checkpointing")


def _check_same_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses to resume a workdir that holds a run of a different config (nothing overwritten)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  current = config_lib.listify(json.loads(config.to_json()))
  with open(path) as f:
    saved = config_lib.listify(json.load(f))
  differences = [d for d in config_lib.diff(saved, current)
                 if d.split(":")[0] not in _PRESENTATION_KEYS]
  if differences:
    raise ValueError(f"{workdir} holds a run with a different config; use another workdir or "
                     "delete it. Differences (saved -> now): " + "; ".join(differences))


def _save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Written once every start-up check has passed, so a rejected config leaves no trace."""
  path = os.path.join(workdir, "config.json")
  if jax.process_index() == 0 and not os.path.exists(path):
    os.makedirs(workdir, exist_ok=True)
    with open(path, "w") as f:
      f.write(config.to_json(indent=2))


def _check_outputs(name: str, outputs: Any, batch_size: int, num_classes: int) -> None:
  if not isinstance(outputs, dict) and not hasattr(outputs, "keys"):
    raise ValueError(f"{name} must return a dict of outputs (\"logits\", \"embedding\", ...), "
                     f"got {type(outputs).__name__}.")
  logits = outputs.get("logits")
  if logits is not None and tuple(logits.shape) != (batch_size, num_classes):
    raise ValueError(f"{name} produces logits of shape {tuple(logits.shape)}, "
                     f"expected (batch={batch_size}, num_classes={num_classes}).")


def _mean_metrics(sums: dict[str, float]) -> dict[str, float]:
  count = sums.pop("count")
  if count == 0:
    raise ValueError("The eval split produced no examples.")
  return {name: value / count for name, value in sums.items()}


def evaluate(eval_step, state, teacher_variables, eval_batches, mesh) -> dict[str, float]:
  totals: dict[str, float] = {}
  for batch in eval_batches():
    sums = jax.device_get(eval_step(state, teacher_variables, mesh_lib.shard_batch(batch, mesh)))
    for name, value in sums.items():
      totals[name] = totals.get(name, 0.0) + float(value)
  return _mean_metrics(totals)


def _initial_state(config, *, data, forward: steps_lib.Forward, method, tx, teacher_variables,
                   mesh) -> TrainState:
  """Step-0 state, from one real eval batch (param shapes; outputs for the method's `init`).

  Also the fail-fast check that the student's and teachers' logits have [batch, num_classes]
  (a mismatch hidden inside model code or a checkpoint is caught before training).
  """
  example = next(iter(data.eval_batches()))
  example = {k: np.asarray(v) for k, v in example.items() if np.asarray(v).dtype.kind in "biuf"}
  x = steps_lib.model_input(example, config.input_key, jnp.float32)
  init_rng, dropout_rng, method_rng, train_rng = jax.random.split(jax.random.key(config.seed), 4)

  @jax.jit
  def init_and_apply(init_rng, dropout_rng, teacher_variables, x):
    # One compiled function: run eagerly, every primitive would be compiled on its own.
    variables = forward.student.init({"params": init_rng, "dropout": dropout_rng}, x,
                                     train=False)
    model_state = {k: v for k, v in variables.items() if k != "params"}
    return (variables, forward.student_eval(variables["params"], model_state, x),
            forward.teachers_eval(teacher_variables, x))

  # The params are replicated, so threefry's partitionable mode (needed only for sharded random
  # arrays) buys nothing here, while it makes XLA compile a deep net's initialisers ~4x slower
  # on CPU (ResNet-8: ~5 s vs ~1.4 s). Scoped to this trace only.
  with jax.threefry_partitionable(False):
    student_variables, student_out, teacher_out = init_and_apply(
        init_rng, dropout_rng, teacher_variables, x)
  batch_size = x.shape[0]
  _check_outputs(f"student {config.model}", student_out, batch_size, config.num_classes)
  for index, out in enumerate(teacher_out):
    _check_outputs(f"teachers[{index}]", out, batch_size, config.num_classes)
  if "label" in example and (example["label"].max() >= config.num_classes
                             or example["label"].min() < 0):
    raise ValueError(f"Labels in {config.dataset} reach {int(example['label'].max())}, outside "
                     f"[0, num_classes={config.num_classes}).")
  method_variables = method.init(method_rng, student_out=student_out, teacher_out=teacher_out,
                                 batch=example)
  state = create_train_state(student_variables=student_variables,
                             method_params=method_variables.params,
                             method_state=method_variables.state, tx=tx,
                             rng=jax.random.key_data(train_rng))
  return mesh_lib.replicate(state, mesh)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains (or resumes) one run in `workdir` and returns the final eval metrics."""
  config = config_lib.validate(config)
  mesh_lib.initialize_distributed(config.multihost)
  mesh = mesh_lib.make_mesh()
  mesh_lib.check_batch_size(config.batch_size // config.grad_accum_steps, mesh,
                            "batch_size / grad_accum_steps")
  mesh_lib.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  _check_same_config(config, workdir)

  data = build.build_data(config)
  transform_batch = build.batch_transform(config)
  method = build.build_method(config)
  compute_dtype = jnp.dtype(config.compute_dtype)
  model_dtype = None if config.compute_dtype == "float32" else compute_dtype
  student = build.build_model(config.model, config.num_classes, config.model_kwargs,
                              dtype=model_dtype)
  teachers, teacher_variables = build.build_teachers(config, dtype=model_dtype)
  teacher_variables = mesh_lib.replicate(teacher_variables, mesh)
  student_tx, schedule = build.build_optimizer(config.optimizer, config.total_steps)
  tx = method.optimizer(student_tx)
  forward = steps_lib.Forward(student, teachers, compute_dtype)
  state = _initial_state(config, data=data, forward=forward, method=method, tx=tx,
                         teacher_variables=teacher_variables, mesh=mesh)

  _save_config(config, workdir)
  checkpointer = checkpoint_lib.Checkpointer(workdir, max_to_keep=config.max_to_keep,
                                             async_save=config.async_checkpointing)
  try:
    restored = checkpointer.restore_latest(state)
  except RuntimeError:
    checkpointer.close()
    raise
  start_step = 0
  if restored is not None:
    state, start_step = restored.state, restored.step
    data.train_iter.set_state(restored.iterator_state)
    logging.info("Resumed %s from step %d.", workdir, start_step)
    print(f"Resuming {workdir} from checkpoint step {start_step}.", flush=True)

  results_path = os.path.join(workdir, "results.json")
  if start_step == config.total_steps and os.path.exists(results_path):
    checkpointer.close()
    print(f"{workdir} is already complete (step {start_step}); returning its results.",
          flush=True)
    with open(results_path) as f:
      return {k: v for k, v in json.load(f).items() if k != "step"}

  writer = writers.MetricWriter(workdir, start_step=start_step)
  train_step = steps_lib.build_train_step(forward=forward, method=method, tx=tx, mesh=mesh,
                                          input_key=config.input_key,
                                          grad_accum_steps=config.grad_accum_steps)
  eval_step = steps_lib.build_eval_step(forward=forward, method=method, mesh=mesh,
                                        input_key=config.input_key)
  run_eval = lambda: evaluate(eval_step, state, teacher_variables, data.eval_batches, mesh)
  progress = writers.ProgressBar(total=config.total_steps, initial=start_step,
                                 enabled=config.progress_bar,
                                 description=os.path.basename(os.path.normpath(workdir)))
  last_log_time, last_log_step = time.time(), start_step
  for step in range(start_step + 1, config.total_steps + 1):
    batch = mesh_lib.shard_batch(transform_batch(next(data.train_iter), step), mesh)
    state, metrics = train_step(state, teacher_variables, batch)
    postfix = {}
    # Metrics are fetched from the device only on log steps, so dispatch stays asynchronous.
    if step % config.log_every == 0 or step == config.total_steps:
      metrics = jax.device_get(metrics)
      if not np.isfinite(metrics["loss"]):
        raise FloatingPointError(f"Loss is {metrics['loss']} at step {step} in {workdir}.")
      now = time.time()
      metrics["steps_per_sec"] = (step - last_log_step) / max(now - last_log_time, 1e-9)
      metrics["learning_rate"] = schedule(step - 1)  # the rate used by this step's update
      last_log_time, last_log_step = now, step
      writer.write(step, "train", metrics)
      postfix = {"loss": float(metrics["loss"])}
    progress.update(1, **postfix)
    if config.eval_every and step % config.eval_every == 0 and step != config.total_steps:
      writer.write(step, "eval", run_eval())
    # On multi-host runs all hosts agree on a step at which to stop when the scheduler announces
    # a preemption (JAX's preemption sync service); save there and exit, a rerun resumes.
    preempted = config.multihost and checkpointer.reached_preemption(step)
    if step % config.checkpoint_every == 0 or step == config.total_steps or preempted:
      # get_state() now: the position after this step's batch, matching the saved state.
      checkpointer.save(step, state, data.train_iter.get_state())
    if preempted:
      progress.close()
      writer.close()
      checkpointer.close()
      raise SystemExit(f"Preempted at step {step}: checkpoint saved in {workdir}; run the same "
                       "command again to resume.")
  progress.close()

  results = run_eval()
  writer.write(config.total_steps, "eval", results)
  writer.close()
  checkpointer.close()
  if jax.process_index() == 0:
    with open(results_path, "w") as f:
      json.dump({"step": config.total_steps, **results}, f, indent=2)
  return results


def final_params(workdir: str) -> Any:
  """Student variables of the newest checkpoint (for comparisons and export)."""
  return checkpoint_lib.restore_exported_variables(workdir)[1]


__all__ = ["TrainState", "evaluate", "final_params", "train_and_evaluate"]
