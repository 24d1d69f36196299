"""Command-line entry point: train or distil one config, or a staged config, in a workdir.

  python -m experiments.main --config=experiments/configs/smoke.py:cpu --workdir=/tmp/smoke \
      [--config.stages.student.total_steps=200 ...]

Re-running the same command in the same workdir resumes from the newest checkpoint; a finished
run only reports its results. Setting JAX_COMPILATION_CACHE_DIR=DIR (JAX's persistent
compilation cache) roughly halves the runtime of repeated small runs on a CPU. Unknown
`--config.*` keys are rejected (the config is locked), and so are unknown keys or inconsistent
settings inside the config file, before anything runs. An error during the run ends with one
`FATAL: ...` line too; its full traceback goes to WORKDIR/error.log (or to the console with
--verbosity=1). A second command in a workdir that a run holds stops at once, naming the holder.

At the end it prints a short table — every stage's accuracy on each evaluated split and, for a
student, its top-1 agreement and predictive KL with its teacher — and the path of results.json,
which holds everything; `--json` prints that JSON instead.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import run_summary
from kd_jax.train import config_references
from kd_jax.train import config_validation
from kd_jax.train import staged_config
from kd_jax.train import stages

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Config file and variant, e.g. experiments/configs/smoke.py:cpu.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_JSON = flags.DEFINE_bool("json", False, "Print the results as JSON instead of the table.")
flags.mark_flags_as_required(["config", "workdir"])


def _parse_flags(argv):
  """absl's parser, with a clear message for `--config.<key>` overrides of unknown keys."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as error:
    overrides = [arg.split("=")[0] for arg in argv[1:] if arg.startswith("--config.")]
    sys.exit(
        f"FATAL: unknown config key {error} in the overrides {overrides}; every "
        "--config.<key> must name a key that the config file defines."
    )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    # orbax logs every file operation at INFO; keep the console to warnings + progress bars.
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  try:  # configuration mistakes end with one clear line, not a traceback
    config_references.check_command_line(flags.FLAGS["config"])
    if staged_config.is_staged(config):
      staged_config.validate_stages(config)
    else:
      config_validation.validate(config)
  except ValueError as error:
    sys.exit(f"FATAL: {error}")
  try:
    results = stages.run(config, _WORKDIR.value)
  except Exception as error:  # pylint: disable=broad-except  (reported as one line, logged whole)
    if flags.FLAGS.verbosity >= 1:
      raise
    sys.exit(fatal_line(error, _write_traceback(_WORKDIR.value)))
  if _JSON.value:
    print(json.dumps(results, indent=2), flush=True)
  else:
    print(run_summary.summary(config, results, _WORKDIR.value), flush=True)


def fatal_line(error: BaseException, log_path: str | None) -> str:
  """One line naming the problem: `FATAL: <type>: <message> (traceback: <where>)`."""
  message = " ".join(str(error).split())  # multi-line messages (orbax tree diffs) on one line
  if len(message) > 1500:
    message = message[:1500] + " ..."
  where = f"full traceback in {log_path}" if log_path else "no log file could be written"
  return f"FATAL: {type(error).__name__}: {message} ({where}; --verbosity=1 prints it)"


def _write_traceback(workdir: str) -> str | None:
  """Appends the current exception's traceback to WORKDIR/error.log (one file per process)."""
  import jax  # pylint: disable=g-import-not-at-top  (already imported by the run)

  name = "error.log" if jax.process_count() == 1 else f"error.process_{jax.process_index()}.log"
  path = os.path.join(workdir, name)
  try:
    os.makedirs(workdir, exist_ok=True)
    with open(path, "a") as f:
      f.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
      f.write(traceback.format_exc())
  except OSError:
    return None
  return path


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
