"""Audio decoding (soundfile), band-limited resampling and fixed-length crop/pad.

Resampling uses a polyphase FIR (`scipy.signal.resample_poly`, Kaiser-windowed sinc): the signal
is upsampled by `up`, low-pass filtered below min(orig, target) / 2 to avoid aliasing, and
downsampled by `down`, with up / down = target / orig in lowest terms. scipy is already required
by jax.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os

import numpy as np


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
  """Resamples mono float audio [T] from `orig_rate` to `target_rate` Hz (float32 out)."""
  from scipy import signal  # pylint: disable=g-import-not-at-top

  audio = np.asarray(audio, np.float32)
  if audio.ndim != 1:
    raise ValueError(f"resample expects mono audio [T], got shape {audio.shape}.")
  if orig_rate <= 0 or target_rate <= 0:
    raise ValueError(f"sample rates must be positive, got {orig_rate} -> {target_rate}.")
  if orig_rate == target_rate:
    return audio
  divisor = math.gcd(int(orig_rate), int(target_rate))
  out = signal.resample_poly(audio, int(target_rate) // divisor, int(orig_rate) // divisor)
  return out.astype(np.float32)


def decode_audio(
    path_or_bytes: str | os.PathLike | bytes, *, sample_rate: int | None = None, mono: bool = True
) -> tuple[np.ndarray, int]:
  """Decodes WAV / FLAC / OGG (anything libsndfile reads) to float32 in [-1, 1].

  Args:
    path_or_bytes: a file path or the encoded file's bytes.
    sample_rate: resample to this rate (e.g. 48 000 for L3-style teachers, 8 000 for small
      students); None keeps the file's rate.
    mono: average the channels (the usual down-mix; keeps loudness of correlated channels).

  Returns:
    (audio [T] if mono else [T, channels], sample rate).
  """
  import soundfile  # pylint: disable=g-import-not-at-top

  source = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
  try:
    audio, rate = soundfile.read(source, dtype="float32", always_2d=True)
  except (RuntimeError, soundfile.LibsndfileError) as e:
    name = "<bytes>" if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
    raise ValueError(f"Could not decode audio {name}: {e}") from e
  if not mono:
    if sample_rate and sample_rate != rate:
      audio = np.stack([resample(c, rate, sample_rate) for c in audio.T], axis=1)
      rate = sample_rate
    return audio, int(rate)
  audio = audio.mean(axis=1)
  if sample_rate and sample_rate != rate:
    audio, rate = resample(audio, rate, sample_rate), sample_rate
  return audio.astype(np.float32), int(rate)


def crop_or_pad(
    audio: np.ndarray, length: int, *, rng: np.random.Generator | None = None
) -> np.ndarray:
  """Returns exactly `length` samples: a crop (random if `rng`, else centred) or zero padding.

  Short clips are padded at the end, so the signal keeps its onset (UrbanSound8K slices start at
  the event).
  """
  audio = np.asarray(audio, np.float32)
  if audio.ndim != 1:
    raise ValueError(f"crop_or_pad expects mono audio [T], got shape {audio.shape}.")
  if length <= 0:
    raise ValueError(f"length must be positive, got {length}.")
  excess = len(audio) - length
  if excess < 0:
    return np.concatenate([audio, np.zeros(-excess, np.float32)])
  start = int(rng.integers(0, excess + 1)) if rng is not None else excess // 2
  return audio[start : start + length]


@dataclasses.dataclass(frozen=True)
class CropOrPadAudio:
  """Pipeline transform: fixed-length audio; random crops when `random` (training)."""

  seconds: float
  random: bool = True
  key: str = "audio"

  def __call__(self, example, rng):
    rate = int(example["sample_rate"])
    length = int(round(self.seconds * rate))
    audio = crop_or_pad(example[self.key], length, rng=rng if self.random else None)
    return {**example, self.key: audio}


@dataclasses.dataclass(frozen=True)
class ResampleAudio:
  """Pipeline transform: adds (or replaces) a copy of the audio at `target_rate`.

  For teacher/student pairs that listen at different rates (an L3-style teacher at 48 kHz, a
  small student at 8 kHz) from one stored clip: `ResampleAudio(8000, out_key="audio_8k")`.
  Apply it after a crop so both views cover the same time span.
  """

  target_rate: int
  key: str = "audio"
  out_key: str | None = None

  def __call__(self, example, rng):
    del rng  # Deterministic.
    audio = resample(example[self.key], int(example["sample_rate"]), self.target_rate)
    if self.out_key is None:
      return {**example, self.key: audio, "sample_rate": np.int32(self.target_rate)}
    return {**example, self.out_key: audio}
