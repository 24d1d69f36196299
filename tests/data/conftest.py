"""Shared fixtures for the data tests: one prepared TFDS data_dir per test session.

Preparing Fashion-MNIST (70 000 images) into array_record takes ~10 s on one CPU core, so every
dataset is prepared once per session into a temporary directory and reused by all data tests.
"""

import pytest
import tensorflow_datasets as tfds


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  tfds.disable_progress_bar()
  return str(tmp_path_factory.mktemp("tfds_data"))
