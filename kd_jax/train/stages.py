"""Runs a single or staged config: how one command trains teachers and then distils them.

A staged config (see `kd_jax.train.config.is_staged`) holds named run configs executed in the
order of `stage_order`, each in WORKDIR/<stage>; a teacher whose `workdir` is relative names an
earlier stage, and so does a relative `init_from.workdir` (the run a student starts from). Every
stage is validated before the first one runs, so a typo in the last student does not surface
after an hour of teacher training.

A stage's teacher (and init_from source) is handed to the loop as an absolute path (the loop
loads it from there); the config the loop saves keeps it relative (`config.portable`), so a moved
workdir still resumes.

Stages with `teacher_cache` keep it in one directory, WORKDIR/teacher_cache_shared, unless they
name their own `teacher_cache_dir`: an entry is keyed by everything the teachers' outputs depend
on (`kd_jax.train.teacher_cache`), so stages that distil the same frozen teacher on the same data
(e.g. every CompRess row) compute its outputs once instead of once per stage.
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections

from kd_jax.train import choices
from kd_jax.train import config as config_lib
from kd_jax.train import loop
from kd_jax.train import mesh as mesh_lib
from kd_jax.train import workdir_lock

SHARED_TEACHER_CACHE = "teacher_cache_shared"  # WORKDIR/<this>: the stages' teacher cache


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Returns the final eval metrics (a dict per stage when staged, also in WORKDIR/results.json).

  Holds the workdir lock for the whole run: a second command in the same workdir stops at once.
  A multi-host run connects its hosts first, so that only process 0 takes the lock.
  """
  runs = (
      [config.stages[name] for name in config.stages] if config_lib.is_staged(config) else [config]
  )
  mesh_lib.initialize_distributed(any(run.get("multihost", False) for run in runs))
  with workdir_lock.hold(workdir):
    return _run(config, workdir)


def _run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  if not config_lib.is_staged(config):
    return loop.train_and_evaluate(config, workdir)
  results = {}
  for name, stage_config in config_lib.validate_stages(config):
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
    if name in config.get("choices", {}):
      chosen, stage_config.method = choices.choose(
          config.choices[name], workdir, name, write=jax.process_index() == 0
      )
      print(f"=== stage {name} takes the method of {chosen} (best on validation)", flush=True)
    print(f"=== stage {name} -> {os.path.join(workdir, name)}", flush=True)
    results[name] = loop.train_and_evaluate(stage_config, os.path.join(workdir, name))
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
  return results
