"""`train_and_evaluate(config, workdir)`: the generic loop for every method.

Order of events (big_vision / Flax examples style): validate the config and compare it with the
one saved in the workdir; build data, models, teachers (params only, cast to the compute dtype
once) and method; run the method's `prepare` over the train / validation splits (or reload its
saved constants); initialise the state on one *train* batch; restore the newest good checkpoint
(state + data-iterator position) if any; then step → log → evaluate → checkpoint until
`total_steps` (or an early stop); final evaluations (every evaluator of `config.evals`, on the
state `config.model_selection` chose on validation, else the last) written to
WORKDIR/results.json, with the periodic evaluations' history and what `config.init_from` loaded.
A finished run restarted in its workdir only returns its results.
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

from kd_jax.methods import base
from kd_jax.train import build
from kd_jax.train import checkpoint as checkpoint_lib
from kd_jax.train import config_json
from kd_jax.train import config_validation
from kd_jax.train import evaluation as evaluation_lib
from kd_jax.train import forward as forward_lib
from kd_jax.train import guards
from kd_jax.train import init_from as init_from_lib
from kd_jax.train import mesh as mesh_lib
from kd_jax.train import phases as phases_lib
from kd_jax.train import prepare as prepare_lib
from kd_jax.train import run_start
from kd_jax.train import selection as selection_lib
from kd_jax.train import state as state_lib
from kd_jax.train import steps as steps_lib
from kd_jax.train import teacher_cache
from kd_jax.train import workdir_config
from kd_jax.train import workdir_lock
from kd_jax.train import writers
from kd_jax.train.state import TrainState


def _fingerprint(config, teacher_steps) -> dict:
  """What a run's constants depend on (compared when they are reloaded)."""
  return {
      "method": config_json.listify(config.method.to_dict()),
      "dataset": config.dataset,
      "train_split": config.train_split,
      "validation_split": config.validation_split,
      "eval_transforms": config_json.listify(json.loads(config.to_json())["eval_transforms"]),
      "teacher_steps": list(teacher_steps),
      "seed": config.seed,
  }


def _check_finite(state: TrainState, workdir: str, checkpointer) -> None:
  """Stops the run, before anything is saved, when a step produced non-finite values.

  The message names the newest checkpoint on disk once pending asynchronous saves have
  finished (each was finite when saved): a save still being written when the run stops would
  otherwise be abandoned, and the checkpoint the message promises would not exist.
  """
  problem = state_lib.describe_nonfinite(jax.device_get(state.nonfinite))
  if problem:
    checkpointer.wait()
    steps = checkpointer.all_steps()
    kept = (
        f"the last good checkpoint (step {steps[-1]}) is kept"
        if steps
        else "no checkpoint was written"
    )
    raise FloatingPointError(
        f"Non-finite values at {problem} in {workdir}; {kept} and nothing "
        "after it was saved. Lower the learning rate or check the data."
    )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (or resumes) one run in `workdir`; returns the final results.

  The results are the "eval" evaluator's metrics at the top level (accuracy, agreement, ...)
  and every evaluator's under "evals" ({name: metrics}), as in WORKDIR/results.json.
  """
  config = config_validation.validate(config)
  mesh_lib.initialize_distributed(config.multihost)
  with workdir_lock.hold(workdir):  # after initialize_distributed: only process 0 locks
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  mesh = mesh_lib.make_mesh()
  mesh_lib.check_batch_size(
      config.batch_size // config.grad_accum_steps, mesh, "batch_size / grad_accum_steps"
  )
  mesh_lib.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  workdir_config.check_same(config, workdir)
  method = build.build_method(config)
  if config.grad_accum_steps > 1 and method.batch_dependent:
    raise ValueError(
        f"method {config.method.name!r} has a batch-dependent loss (it couples the "
        f"examples of a batch), so grad_accum_steps={config.grad_accum_steps} would "
        "silently change its objective; set grad_accum_steps=1."
    )
  evaluations = evaluation_lib.Evaluations(config)

  data = build.build_data(config)
  if config.teacher_cache:
    teacher_cache.check_cacheable(config, method, data.train_transforms)
  transform_batch = build.batch_transform(config)
  compute_dtype = jnp.dtype(config.compute_dtype)
  model_dtype = None if config.compute_dtype == "float32" else compute_dtype
  student = build.build_model(
      config.model, config.num_classes, config.model_kwargs, dtype=model_dtype
  )
  example = run_start.peek_train_batch(data.train_iter)
  example_input = forward_lib.model_input(example, config.input_key, jnp.float32)
  teachers, teacher_variables, teacher_steps = build.build_teachers(
      config, example_input, dtype=model_dtype
  )
  build.check_teacher_shapes(config, teachers, teacher_variables, example_input)
  # Cast once here rather than inside every step.
  teacher_variables = mesh_lib.replicate(
      forward_lib.cast_floats(teacher_variables, compute_dtype), mesh
  )
  student_outputs, teacher_outputs = method.requested_outputs()
  forward = forward_lib.Forward(
      student,
      teachers,
      compute_dtype,
      student_outputs=student_outputs,
      teacher_outputs=teacher_outputs,
  )
  context = base.RunContext(
      total_steps=config.total_steps,
      steps_per_epoch=prepare_lib.steps_per_epoch(data.num_train_examples, config.batch_size),
      num_train_examples=data.num_train_examples,
      batch_size=config.batch_size,
      num_classes=config.num_classes,
      seed=config.seed,
      workdir=workdir,
  )

  start = run_start.start_student(
      config,
      example=example,
      forward=forward,
      teacher_variables=teacher_variables,
      resuming=bool(checkpoint_lib.saved_steps(workdir)),
  )
  workdir_config.save(config, workdir, example=example)
  if start.init_record is not None:
    init_from_lib.write_record(workdir, start.init_record)
  if jax.process_index() == 0:  # class names of user data, for `kd_jax.predict`
    build.data_api().user_data.write_label_names(data.train_source, workdir)
  model_input = lambda batch: forward_lib.model_input(batch, config.input_key, compute_dtype)
  roles = {"train": config.train_split}
  if config.validation_split:
    roles["validation"] = config.validation_split
  make_prepare_context = lambda: prepare_lib.make_context(
      context=context,
      roles=roles,
      batches=lambda split: data.batches(split, sharded=False),
      teacher_outputs=lambda batch: forward.teachers_eval(teacher_variables, model_input(batch)),
      model_input=model_input,
  )
  constants = prepare_lib.prepare_constants(
      method,
      make_prepare_context,
      workdir=workdir,
      fingerprint=_fingerprint(config, teacher_steps),
      save=jax.process_index() == 0,
  )
  constants = mesh_lib.replicate(jax.tree.map(jnp.asarray, constants), mesh)

  train_teachers = teacher_variables  # what the train step gets: variables, or cached outputs
  if config.teacher_cache:
    cache = teacher_cache.load_or_compute(
        teacher_cache.directory(config, workdir),
        teacher_cache.fingerprint(
            config, teacher_variables, teacher_steps, teacher_outputs, data.num_train_examples
        ),
        lambda: teacher_cache.compute(
            lambda batch: forward.teachers_eval(teacher_variables, model_input(batch)),
            data.batches(config.train_split, sharded=False, train_view=True),
        ),
        save=jax.process_index() == 0,
    )
    train_teachers = mesh_lib.replicate(jax.tree.map(jnp.asarray, cache), mesh)

  # With alternating phases the student's schedule runs over the steps that update it.
  phase_of_step = phases_lib.phase_of_steps(method, context)
  trains_student = phases_lib.steps_training(method, phase_of_step, "student")
  schedule_position = phases_lib.schedule_positions(trains_student)
  student_tx, schedule = build.build_optimizer(config.optimizer, int(trains_student.sum()))
  tx = method.optimizer(student_tx, context)
  state = run_start.initial_train_state(
      config,
      start,
      example=example,
      forward=forward,
      method=method,
      tx=tx,
      constants=constants,
      context=context,
      mesh=mesh,
  )

  checkpointer = checkpoint_lib.Checkpointer(
      workdir, max_to_keep=config.max_to_keep, async_save=config.async_checkpointing
  )
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

  selection = (
      selection_lib.ModelSelection(
          config.model_selection, workdir, async_save=config.async_checkpointing
      )
      if config.model_selection.evaluator
      else None
  )
  results_path = os.path.join(workdir, "results.json")
  finished = start_step == config.total_steps or (selection and selection.stopped_early)
  if finished and os.path.exists(results_path):
    checkpointer.close()
    if selection:
      selection.close()
    print(f"{workdir} is already complete (step {start_step}); returning its results.", flush=True)
    with open(results_path) as f:
      return {k: v for k, v in json.load(f).items() if k != "step"}

  writer = writers.MetricWriter(workdir, start_step=start_step)
  train_step = steps_lib.build_train_step(
      forward=forward,
      method=method,
      tx=tx,
      mesh=mesh,
      input_key=config.input_key,
      context=context,
      grad_accum_steps=config.grad_accum_steps,
      cached_teachers=config.teacher_cache,
  )
  eval_step = steps_lib.build_eval_step(
      forward=forward, method=method, mesh=mesh, input_key=config.input_key, context=context
  )

  def run_evaluations(step: int, final: bool, names=None) -> dict[str, dict]:
    return evaluations.run(
        step,
        final=final,
        names=names,
        batches=data.batches,
        writer=writer,
        state=state,
        teacher_variables=teacher_variables,
        constants=constants,
        method=method,
        forward=forward,
        context=context,
        input_key=config.input_key,
        mesh=mesh,
        eval_step=eval_step,
    )

  progress = writers.ProgressBar(
      total=config.total_steps,
      initial=start_step,
      enabled=config.progress_bar,
      description=os.path.basename(os.path.normpath(workdir)),
  )
  if start_step == 0 and evaluations.due_at(0):  # `first: 0`: the starting state competes too
    evals = run_evaluations(0, final=False)
    if selection and evals:
      selection.update(0, evals, state, data.train_iter.get_state())
  last_log_time, last_log_step = time.time(), start_step
  for step in range(start_step + 1, config.total_steps + 1):
    host_batch = transform_batch(next(data.train_iter), step)
    guards.check_labels(
        host_batch, config.num_classes, f"train batch of step {step} ({config.dataset})"
    )
    batch = mesh_lib.shard_batch(host_batch, mesh)
    phase = int(phase_of_step[step - 1])  # the optimiser step being computed is step - 1
    state, metrics = train_step(state, train_teachers, constants, batch, phase)
    postfix = {}
    # Metrics are fetched from the device only on log steps, so dispatch stays asynchronous.
    if step % config.log_every == 0 or step == config.total_steps:
      _check_finite(state, workdir, checkpointer)
      metrics = jax.device_get(metrics)
      now = time.time()
      metrics["steps_per_sec"] = (step - last_log_step) / max(now - last_log_time, 1e-9)
      # The rate used by this step's update (of the student, in a phase that trains it).
      metrics["learning_rate"] = schedule(schedule_position[step - 1])
      last_log_time, last_log_step = now, step
      writer.write(step, "train", metrics)
      postfix = {"loss": float(metrics["loss"])}
    progress.update(1, **postfix)
    stop_early = False
    if step != config.total_steps:
      evals = run_evaluations(step, final=False)
    else:  # the last state competes too (the final evaluations read the selected one)
      evals = run_evaluations(step, final=False, names=evaluations.periodic()) if selection else {}
    if selection and evals:
      _check_finite(state, workdir, checkpointer)  # never select a non-finite state
      stop_early = selection.update(
          step, evals, state, data.train_iter.get_state(), last=step == config.total_steps
      )
    # On multi-host runs all hosts agree on a step at which to stop when the scheduler announces
    # a preemption (JAX's preemption sync service); save there and exit, a rerun resumes.
    preempted = config.multihost and checkpointer.reached_preemption(step)
    if step % config.checkpoint_every == 0 or step == config.total_steps or preempted or stop_early:
      _check_finite(state, workdir, checkpointer)  # never save a non-finite state
      # get_state() now: the position after this step's batch, matching the saved state.
      checkpointer.save(step, state, data.train_iter.get_state())
    if preempted:
      progress.close()
      writer.close()
      checkpointer.close()
      raise SystemExit(
          f"Preempted at step {step}: checkpoint saved in {workdir}; run the same "
          "command again to resume."
      )
    if stop_early:
      print(
          f"Early stopping at step {step}: {selection.evaluator}.{selection.metric} has not "
          f"improved for {selection.patience} evaluations.",
          flush=True,
      )
      break
  progress.close()

  final_step = int(jax.device_get(state.step))
  extra = {}
  history = evaluations.history(workdir) if jax.process_index() == 0 else {}
  if history:
    extra["history"] = history
  if selection:
    state = selection.best_state(state)  # chosen on validation, applied to every split
    extra["model_selection"] = selection.summary()
    selection.close()
  evals = run_evaluations(final_step, final=True)
  writer.close()
  checkpointer.close()
  init_record = init_from_lib.read_record(workdir)
  if init_record is not None:
    extra["init_from"] = init_record
  results = {**evals["eval"], "evals": evals, **extra}
  if jax.process_index() == 0:
    with open(results_path, "w") as f:
      json.dump({"step": final_step, **results}, f, indent=2)
  return results


def final_params(workdir: str) -> Any:
  """Student variables of the newest checkpoint (for comparisons and export)."""
  return checkpoint_lib.restore_exported_variables(workdir)[1]


__all__ = ["TrainState", "final_params", "train_and_evaluate"]
