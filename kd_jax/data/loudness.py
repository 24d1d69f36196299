"""A-weighted equivalent level of a waveform: the loudness signal of SEA's SPL-informed sampling.

SEA (PAPERS.md §1) ranks the windows of the target-domain pool by their sound-pressure level. A
recording carries no calibration to pascals, so the level here is relative to digital full
scale (dBFS), A-weighted as a sound-level meter would (IEC 61672-1, Annex E):

  R_A(f) = 12194² f⁴ / ((f² + 20.6²) · √((f² + 107.7²)(f² + 737.9²)) · (f² + 12194²))
  A(f)   = 20·log10(R_A(f) / R_A(1000))        (0 dB at 1 kHz; the standard's "+2.00 dB")

and the equivalent continuous level of a clip x[0..T) through that filter, computed in the
frequency domain (Parseval) with the one-sided DFT X of x:

  ms_A  = (1/T²) Σ_f c_f |X[f]|² 10^{A(f)/10},   c_f = 1 at DC and Nyquist, 2 otherwise
  L_Aeq = 10·log10(2 · ms_A)  dBFS              (AES17: a full-scale sine reads 0 dBFS)

The weighting is applied to the DFT of the whole clip (a circular, zero-phase filter), which for
a level — an average of power over the clip — equals time-domain filtering up to edge effects.
Functions take JAX or NumPy arrays and run inside `jit`.
"""

from __future__ import annotations

import jax.numpy as jnp

# IEC 61672-1 pole frequencies (Hz).
_F1, _F2, _F3, _F4 = 20.598997, 107.65265, 737.86223, 12194.217
_FLOOR_DB = -120.0  # digital silence: a finite level keeps ranks and logs well defined


def _r_a(frequency):
  """R_A(f) as a product of well-scaled factors (f⁴·12194² overflows float32 otherwise)."""
  f2 = jnp.square(jnp.asarray(frequency, jnp.float32))
  f = jnp.sqrt(f2)
  return (
      (f2 / (f2 + _F1**2))
      * (f / jnp.sqrt(f2 + _F2**2))
      * (f / jnp.sqrt(f2 + _F3**2))
      * (_F4**2 / (f2 + _F4**2))
  )


def a_weighting_gain(frequency):
  """The A-weighting as a linear amplitude gain, R_A(f) / R_A(1000 Hz) (0 at DC)."""
  return _r_a(frequency) / _r_a(1000.0)


def a_weighting_db(frequency):
  """A(f) in dB (−inf at f = 0): e.g. ≈ −19.1 dB at 100 Hz, 0 at 1 kHz, −2.5 dB at 10 kHz."""
  return 20.0 * jnp.log10(a_weighting_gain(frequency))


def a_weighted_leq(audio, sample_rate):
  """L_Aeq of each clip in dBFS (see the module docstring), floored at −120 dB.

  Args:
    audio: [..., T] float waveforms in [−1, 1].
    sample_rate: Hz, a scalar or one rate per clip (shape [...]).
  Returns:
    [...] float32.
  """
  audio = jnp.asarray(audio, jnp.float32)
  if audio.ndim < 1 or audio.shape[-1] < 2:
    raise ValueError(f"a_weighted_leq needs waveforms [..., T] with T >= 2, got {audio.shape}.")
  length = audio.shape[-1]
  # Normalised by T before squaring: |X|² of a long clip would lose float32 precision.
  power = jnp.square(jnp.abs(jnp.fft.rfft(audio, axis=-1) / length))
  bins = jnp.arange(power.shape[-1], dtype=jnp.float32)
  rate = jnp.asarray(sample_rate, jnp.float32)[..., None]
  gain = a_weighting_gain(bins * rate / length)
  # One-sided spectrum: every bin but DC (and Nyquist for even T) stands for two.
  weight = jnp.full(power.shape[-1], 2.0).at[0].set(1.0)
  if length % 2 == 0:
    weight = weight.at[-1].set(1.0)
  mean_square = jnp.sum(weight * power * jnp.square(gain), axis=-1)
  level = 10.0 * jnp.log10(jnp.maximum(2.0 * mean_square, 1e-30))
  return jnp.maximum(level, _FLOOR_DB)
