"""Config of the 2-process test (tests/reliability/test_multihost.py): TinyCNN on the MNIST subset,
with a train source that records which examples each process reads.

  python -m experiments.main --config=tests/reliability/multihost_config.py --workdir=DIR
"""

import os

import jax

from tests.train import helpers


class _Recording:
  """Appends every train index this process reads to $KD_JAX_READS_DIR/reads_<process>.txt."""

  def __init__(self, source, directory):
    self.source, self.directory = source, directory

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    with open(os.path.join(self.directory, f"reads_{jax.process_index()}.txt"), "a") as f:
      f.write(f"{index}\n")
    return self.source[index]


def recorded_mnist(split, *, data_dir=None, manual_dir=None):
  source = helpers.mnist_small(split, data_dir=data_dir, manual_dir=manual_dir)
  directory = os.environ.get("KD_JAX_READS_DIR")
  return _Recording(source, directory) if split == "train" and directory else source


def get_config(arg: str = ""):
  del arg
  return helpers.tiny_config(
      dataset="tests.reliability.multihost_config:recorded_mnist",
      total_steps=8,
      checkpoint_every=4,
      multihost=True,
  )
