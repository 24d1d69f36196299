"""Real inputs for the model tests: Fashion-MNIST images and recorded speech (shared DATA.md)."""

import gzip
import pathlib

import numpy as np
import pytest

from tests import system_data

FASHION_MNIST = (
    system_data.find(
        "dataset-fashion-mnist",
        "/t10k-images-idx3-ubyte.gz",
        "/usr/share/datasets/fashion-mnist*/t10k-images-idx3-ubyte.gz",
    )
    or system_data.NOT_INSTALLED
)
SPEECH = system_data.asterisk_sounds() or system_data.NOT_INSTALLED
FIXTURES = pathlib.Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fashion_images() -> np.ndarray:
  """First 8 Fashion-MNIST test images, float32 [8, 28, 28, 1] in [0, 1] (Debian package)."""
  if not FASHION_MNIST.is_file():
    system_data.missing_data("dataset-fashion-mnist")
  with gzip.open(FASHION_MNIST, "rb") as f:
    raw = f.read(16 + 8 * 28 * 28)
  magic, _count, rows, cols = np.frombuffer(raw[:16], ">i4")
  assert magic == 2051 and rows == cols == 28, "not an IDX image file"
  return (np.frombuffer(raw[16:], np.uint8).reshape(8, 28, 28, 1) / 255.0).astype(np.float32)


def read_speech(relative: str) -> tuple[np.ndarray, int]:
  """A recorded Asterisk prompt (8 kHz, 16-bit PCM, mono) as float32 in [-1, 1]."""
  import soundfile

  path = SPEECH / relative
  if not path.is_file():
    system_data.missing_data("asterisk-core-sounds-en-wav")
  audio, rate = soundfile.read(str(path), dtype="float32")
  return audio, rate
