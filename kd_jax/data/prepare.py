"""Prepares datasets into a TFDS data_dir ahead of time (e.g. once per machine or CI cache).

    python -m kd_jax.data.prepare fashion_mnist mnist5k rotten_tomatoes bbc_news sonic_pi
    python -m kd_jax.data.prepare urbansound8k --manual_dir=/data/UrbanSound8K --data_dir=/data/tfds

Preparing is otherwise done lazily by the first `get_source` call; doing it here keeps the first
training step from paying for it and reports each dataset's splits.
"""

from __future__ import annotations

import argparse
import time

from kd_jax.data import sources


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("names", nargs="+", help="dataset names as accepted by get_source")
  parser.add_argument(
      "--data_dir", default=None, help="default: $KD_JAX_DATA_DIR or " "~/tensorflow_datasets"
  )
  parser.add_argument("--manual_dir", default=None)
  args = parser.parse_args(argv)
  for name in args.names:
    start = time.perf_counter()
    builder = sources.get_builder(name, data_dir=args.data_dir, manual_dir=args.manual_dir)
    splits = {split: info.num_examples for split, info in builder.info.splits.items()}
    print(f"{name}: {splits} in {builder.data_dir} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
  main()
