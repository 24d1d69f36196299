"""Runs a single or staged config: how one command trains teachers and then distils them.

A staged config (see `kd_jax.train.staged_config.is_staged`) holds named run configs executed in the
order of `stage_order`, each in WORKDIR/<stage>; a teacher whose `workdir` is relative names an
earlier stage, and so does a relative `init_from.workdir` (the run a student starts from). Every
stage is validated before the first one runs, and every stage already started is compared with
the config and data it was started with, so a typo in the last student (or an edited setting of
a half-done command) does not surface after an hour of teacher training.

A stage's teacher (and init_from source) is handed to the loop as an absolute path (the loop
loads it from there); the config the loop saves keeps it relative (`config_json.portable`), so a moved
workdir still resumes.

Stages with `teacher_cache` keep it in one directory, WORKDIR/teacher_cache_shared, unless they
name their own `teacher_cache_dir`: an entry is keyed by everything the teachers' outputs depend
on (`kd_jax.train.teacher_cache`), so stages that distil the same frozen teacher on the same data
(e.g. every CompRess row) compute its outputs once instead of once per stage.

Each stage starts with a line "=== stage k/n NAME -> DIR", and from the second on the time so
far and an estimate of the rest: the finished stages' seconds per step times the steps still to
run (stages that were already complete, and so took no time, are left out of the rate).
"""

from __future__ import annotations

import json
import os
import time

import jax
import ml_collections

from kd_jax.train import choices
from kd_jax.train import config as config_lib
from kd_jax.train import config_validation
from kd_jax.train import loop
from kd_jax.train import mesh as mesh_lib
from kd_jax.train import staged_config
from kd_jax.train import workdir_config
from kd_jax.train import workdir_lock

SHARED_TEACHER_CACHE = "teacher_cache_shared"  # WORKDIR/<this>: the stages' teacher cache


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Returns the final eval metrics (a dict per stage when staged, also in WORKDIR/results.json).

  Holds the workdir lock for the whole run: a second command in the same workdir stops at once.
  A multi-host run connects its hosts first, so that only process 0 takes the lock.
  """
  runs = (
      [config.stages[name] for name in config.stages]
      if staged_config.is_staged(config)
      else [config]
  )
  mesh_lib.initialize_distributed(any(run.get("multihost", False) for run in runs))
  with workdir_lock.hold(workdir):
    return _run(config, workdir)


def _with_workdir(stage_config: ml_collections.ConfigDict, workdir: str):
  """The stage as the loop runs it: teachers that name stages as absolute paths, the shared
  teacher cache."""
  teachers = config_lib.teacher_specs(stage_config)  # fresh copies: safe to edit
  for teacher in teachers:
    if not teacher.get("pretrained", False) and not os.path.isabs(teacher.workdir):
      teacher.workdir = os.path.join(os.path.abspath(workdir), teacher.workdir)
  stage_config.teachers = tuple(teachers)
  init = stage_config.init_from
  if init.get("workdir") and not os.path.isabs(init.workdir):  # a stage name (or a path inside)
    init.workdir = os.path.join(os.path.abspath(workdir), init.workdir)
  if stage_config.teacher_cache and not stage_config.teacher_cache_dir:
    stage_config.teacher_cache_dir = os.path.join(os.path.abspath(workdir), SHARED_TEACHER_CACHE)
  return stage_config


def _run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  if not staged_config.is_staged(config):
    return loop.train_and_evaluate(config, workdir)
  stages = [
      (name, _with_workdir(stage_config, workdir))
      for name, stage_config in staged_config.validate_stages(config)
  ]
  # A resumed stage whose config or data changed fails now, before the stages ahead of it run
  # (a chosen stage's method is known only once its candidates have finished: checked below).
  for name, stage_config in stages:
    if name not in config.get("choices", {}):
      workdir_config.check_same(stage_config, os.path.join(workdir, name))
  results = {}
  clock = _StageClock([c.total_steps for _, c in stages])
  for number, (name, stage_config) in enumerate(stages, 1):
    if name in config.get("choices", {}):
      choice = choices.choose(config.choices[name], workdir, name)
      stage_config.method = ml_collections.ConfigDict(choice.method)
      # The stage's checks come first: a resumed stage that started with another winner is
      # refused here, before choice.json could name a winner the stage never trained with.
      workdir_config.check_same(
          config_validation.validate(stage_config, name=f"stage {name!r}"),
          os.path.join(workdir, name),
      )
      if jax.process_index() == 0:  # other hosts read the same files and agree
        choices.write(choice, config.choices[name], workdir, name)
      print(
          f"=== stage {name} takes the method of {choice.winner} (best on validation)", flush=True
      )
    stage_dir = os.path.join(workdir, name)
    print(
        f"=== stage {number}/{len(stages)} {name} -> {stage_dir}{clock.estimate()}",
        flush=True,
    )
    already_complete = os.path.exists(os.path.join(stage_dir, "results.json"))
    results[name] = loop.train_and_evaluate(stage_config, stage_dir)
    clock.finished(ran=not already_complete)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
  return results


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(round(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  if hours:
    return f"{hours}h {minutes:02d}m"
  return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


class _StageClock:
  """Elapsed time of a staged run and the remaining time: stages that train are estimated at the
  finished training stages' seconds per step (build and evaluation included), stages of 0 steps
  (a pretrained model evaluated as it comes) at the mean time of the finished ones. The two are
  kept apart because a 0-step stage can take minutes of evaluation: counted as one "step", it
  made the estimate of a 36-stage table thousands of hours."""

  def __init__(self, steps: list[int]):
    self.steps, self.done = steps, 0
    self.start = self.stage_start = time.time()
    self.seconds_run = self.steps_run = 0.0
    self.seconds_evaluated, self.stages_evaluated = 0.0, 0

  def finished(self, *, ran: bool) -> None:
    if ran:
      seconds = time.time() - self.stage_start
      if self.steps[self.done]:
        self.seconds_run += seconds
        self.steps_run += self.steps[self.done]
      else:
        self.seconds_evaluated += seconds
        self.stages_evaluated += 1
    self.done += 1
    self.stage_start = time.time()

  def estimate(self) -> str:
    """ " (1m 05s elapsed, about 40s left)", or "" before any stage has run."""
    if not self.done:
      return ""
    elapsed = f" ({_duration(time.time() - self.start)} elapsed"
    remaining = self.steps[self.done :]
    trained = sum(remaining)
    evaluated = sum(1 for s in remaining if not s)
    if (trained and not self.steps_run) or (evaluated and not self.stages_evaluated):
      return elapsed + ")"  # no finished stage of that kind to time the rest by yet
    left = (trained * self.seconds_run / self.steps_run if trained else 0.0) + (
        evaluated * self.seconds_evaluated / self.stages_evaluated if evaluated else 0.0
    )
    return elapsed + f", about {_duration(left)} left)"
