"""SEA's audio networks: a JAX mel-spectrogram front end, the L3 teacher and students 0–3.

Front end (PAPERS.md §1; OpenL3 / edgel3 used kapre's Melspectrogram layer):

  frames   x_t[n] = x[t·hop + n − pad_left] w[n],  w the periodic Hann window of length n_fft
  STFT     X_t[f] = Σ_n x_t[n] e^{−2πi f n / n_fft},   f = 0 … n_fft/2
  mel      M[m, t] = Σ_f |X_t[f]|^power · H[f, m]       H: HTK-scale triangles (slaney area norm)
  dB       D = 10·log10(max(M^{2/power}, amin)) − max_{m,t}(…),  clipped below at −top_db

The defaults are true decibels of a magnitude mel. OpenL3's own front end (kapre) differs in its
log scaling and, in openl3 ≥ 0.4, in mel scale and padding: `kd_jax.models.openl3` spells out
each difference and the MelConfig fields (`db_power`, `padding="end"`) that reproduce it.

`padding="same"` (kapre 0.1.4's choice) gives ⌈T / hop⌉ frames, so 1 s at 48 kHz with hop 242 is the
teacher's (256, 199) and 1 s at 8 kHz with hop 160 the students' (64, 50); `"center"` is librosa's
(T // hop + 1 frames). The dB reference is each example's own maximum, as in kapre 0.1.4 and
openl3's decibel layer (older kapre normalised by the batch maximum, which makes an example
depend on its batch-mates; librosa's `ref=np.max` is per example as here).

Networks (Arandjelović & Zisserman's L3 audio subnetwork; SEA, Srivastava et al., ICASSP 2021,
Table 1): BatchNorm on the spectrogram, then four blocks of (conv3×3-BN-ReLU)×2 with 2×2 max-pool
after blocks 1–3 and a global max-pool after block 4 (OpenL3's final (32, 24) pool covers the whole
map; OpenL3's last convolution, `audio_embedding_layer`, has no BatchNorm or ReLU after it:
`openl3_head=True`, 2 048 parameters fewer). Convolutions carry biases and BN follows Keras
(momentum 0.99, eps 1e-3), as in the Keras originals, so the parameter counts — Keras counts BN
moving statistics — reproduce Table 1:

  model       filters            params (ours)  size f32   activations  paper
  L3 teacher  64/128/256/512     4 691 908      18.77 MB   13.05 MB     4.69 M / 18.80 / 12.74 MB
  Student 0   64/128/256/512     4 691 908      18.77 MB    0.82 MB     4.69 M / 18.80 / 0.82 MB
  Student 1   32/64/128/256      1 175 524       4.70 MB    0.41 MB     1.17 M / 4.70 / 0.41 MB
  Student 2   32/64/128/128        584 420       2.34 MB    0.41 MB     0.58 M / 2.34 / 0.41 MB
  Student 3   32/64/128/64         399 460       1.60 MB    0.41 MB     0.40 M / 1.60 / 0.41 MB

Activation memory (ours) = `temp_size_in_bytes` of XLA's memory analysis of the compiled
inference forward pass, one spectrogram, CPU backend (`kd_jax.models.summary`): after buffer
reuse it comes to the largest activation, the first block's output (e.g. 64×50×64 float32 =
0.82 MB), which matches the paper's student figures exactly; for the teacher that is
256×199×64×4 B = 13.04 MB, 2.4% above the paper's 12.74 MB.

The students' L2 penalty of 1e-5 on convolution kernels is a loss term: the SEA method adds it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from kd_jax.models.outputs import requested, select
from kd_jax.models.resnet import classifier_logits


@dataclasses.dataclass(frozen=True)
class MelConfig:
  sample_rate: int
  n_fft: int
  hop_length: int
  n_mels: int
  power: float = 1.0  # 1: magnitude (SEA), 2: power
  fmin: float = 0.0
  fmax: float | None = None  # None: Nyquist
  htk: bool = True
  norm: str | None = "slaney"
  padding: str = "same"  # "same" (Keras conv), "center" (librosa), "valid", "end" (tf.signal)
  amin: float = 1e-10  # on the scale 10·log10 is taken of (mel^db_power)
  top_db: float | None = 80.0
  # D = 10·log10(mel^db_power); None: 2/power, true decibels. kapre's "decibels" are 10·log10
  # of a magnitude (kd_jax.models.openl3): 0.5 with power 2, or 1.0 with power 1.
  db_power: float | None = None


L3_MEL = MelConfig(sample_rate=48_000, n_fft=2048, hop_length=242, n_mels=256)
SEA_STUDENT_MEL = MelConfig(sample_rate=8_000, n_fft=1024, hop_length=160, n_mels=64)


def hz_to_mel(frequency, htk: bool = True):
  """HTK: m = 2595·log10(1 + f/700). Slaney: linear below 1 kHz, logarithmic above."""
  frequency = np.asarray(frequency, dtype=np.float64)
  if htk:
    return 2595.0 * np.log10(1.0 + frequency / 700.0)
  linear = frequency / (200.0 / 3)
  log_part = 15.0 + np.log(np.maximum(frequency, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
  return np.where(frequency >= 1000.0, log_part, linear)


def mel_to_hz(mel, htk: bool = True):
  mel = np.asarray(mel, dtype=np.float64)
  if htk:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
  linear = mel * (200.0 / 3)
  log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
  return np.where(mel >= 15.0, log_part, linear)


def mel_filterbank(config: MelConfig) -> np.ndarray:
  """Triangular filters H [n_fft/2 + 1, n_mels], centres equally spaced on the mel scale.

  Filter m rises from centre m−1 to m and falls to m+1 (n_mels + 2 edges from fmin to fmax);
  with norm="slaney" each triangle is scaled by 2 / (f_{m+1} − f_{m−1}) to constant area.
  """
  fmax = config.sample_rate / 2 if config.fmax is None else config.fmax
  if not 0 <= config.fmin < fmax <= config.sample_rate / 2:
    raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got {config.fmin}, {fmax}")
  bins = np.linspace(0, config.sample_rate / 2, config.n_fft // 2 + 1)
  edges = mel_to_hz(
      np.linspace(
          hz_to_mel(config.fmin, config.htk), hz_to_mel(fmax, config.htk), config.n_mels + 2
      ),
      config.htk,
  )
  lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
  rising = (bins[None] - lower) / (centre - lower)
  falling = (upper - bins[None]) / (upper - centre)
  weights = np.maximum(0.0, np.minimum(rising, falling))
  if config.norm == "slaney":
    weights *= 2.0 / (upper - lower)
  elif config.norm is not None:
    raise ValueError(f"norm must be 'slaney' or None, got {config.norm!r}")
  return weights.T.astype(np.float32)


def frame_count(num_samples: int, config: MelConfig) -> int:
  if config.padding in ("same", "end"):
    return math.ceil(num_samples / config.hop_length)
  if config.padding == "center":
    return num_samples // config.hop_length + 1
  if config.padding == "valid":
    return (num_samples - config.n_fft) // config.hop_length + 1
  raise ValueError(f"padding must be 'same', 'center', 'valid' or 'end', got {config.padding!r}")


def padding_amounts(num_samples: int, config: MelConfig) -> tuple[int, int]:
  """Zeros added (left, right) before framing; "same" follows TensorFlow's convolution rule, "end"
  `tf.signal.stft(pad_end=True)` (the same ⌈T / hop⌉ frames, all the zeros after the signal)."""
  if config.padding == "center":
    return config.n_fft // 2, config.n_fft // 2
  if config.padding == "valid":
    return 0, 0
  frames = frame_count(num_samples, config)
  total = max((frames - 1) * config.hop_length + config.n_fft - num_samples, 0)
  if config.padding == "end":
    return 0, total
  return total // 2, total - total // 2


def mel_spectrogram(audio: jnp.ndarray, config: MelConfig, *, decibels: bool = True) -> jnp.ndarray:
  """[batch, samples] waveform → [batch, n_mels, frames, 1] (dB when `decibels`), float32."""
  audio = jnp.asarray(audio, jnp.float32)
  if audio.ndim != 2:
    raise ValueError(f"audio must be [batch, samples], got shape {tuple(audio.shape)}")
  num_samples = audio.shape[1]
  frames = frame_count(num_samples, config)
  if frames < 1:
    raise ValueError(f"{num_samples} samples give no frame with n_fft={config.n_fft}")
  left, right = padding_amounts(num_samples, config)
  padded = jnp.pad(audio, ((0, 0), (left, right)))
  index = np.arange(frames)[:, None] * config.hop_length + np.arange(config.n_fft)[None]
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(config.n_fft) / config.n_fft)  # periodic
  spectrum = jnp.fft.rfft(padded[:, index] * window.astype(np.float32), axis=-1)
  magnitude = jnp.abs(spectrum) ** config.power  # [batch, frames, n_fft/2 + 1]
  mel = jnp.einsum(
      "btf,fm->bmt", magnitude, jnp.asarray(mel_filterbank(config)), precision="highest"
  )
  if decibels:
    mel = to_decibels(mel, config)
  return mel[..., None]


def to_decibels(mel: jnp.ndarray, config: MelConfig) -> jnp.ndarray:
  """10·log10 of mel^db_power (the power scale unless db_power says otherwise), relative to each
  example's maximum, floored at −top_db."""
  exponent = 2.0 / config.power if config.db_power is None else config.db_power
  db = 10.0 * jnp.log10(jnp.maximum(mel**exponent, config.amin))
  db = db - jnp.max(db, axis=tuple(range(1, db.ndim)), keepdims=True)
  if config.top_db is not None:
    db = jnp.maximum(db, -config.top_db)
  return db


def global_max_pool(x: jnp.ndarray) -> jnp.ndarray:
  """[batch, h, w, channels] → [batch, channels]: the maximum over the whole map (L3's last
  pooling), as a max-pool whose window is the map.

  Not `jnp.max`: its gradient finds the maximum again by testing `x == max(x)` and divides by
  the number of matches, and XLA recomputes `x` (the BatchNorm and ReLU before the pool) inside
  each kernel that reads it. Those kernels need not round it identically: with LLVM optimisation
  off on CPU they did not, the count was 0 where the match was 1, and the gradient +inf (the
  SEA teacher at step 3). The pooling op picks one position per (example, channel) inside itself
  and sends the whole gradient there, with no comparison to repeat and no division.
  """
  window = tuple(x.shape[1:3])
  return nn.max_pool(x, window, strides=window, padding="VALID").reshape(x.shape[0], x.shape[-1])


def keras_batch_norm(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
  """Keras BatchNormalization defaults (momentum 0.99, epsilon 1e-3) as in OpenL3/edgel3."""
  return nn.BatchNorm(
      use_running_average=not train, momentum=0.99, epsilon=1e-3, dtype=dtype, name=name
  )


class L3AudioNet(nn.Module):
  """L3 audio subnetwork / SEA student. Call with a waveform [batch, samples] (the front end
  runs inside) or a spectrogram [batch, n_mels, frames, 1].

  Returns "logits" (None unless num_classes), "embedding" [batch, filters[-1]] (global max-pool),
  "features" (each block's output before its pooling, [batch, h, w, filters[i]]) and
  "spectrogram".
  """

  filters: Sequence[int] = (64, 128, 256, 512)
  mel: MelConfig = L3_MEL
  num_classes: int | None = None
  dtype: Any = jnp.float32
  # OpenL3's head (kd_jax.models.openl3): the last convolution is the embedding layer, with no
  # BatchNorm or ReLU after it, so the max-pooled embedding can be negative.
  openl3_head: bool = False

  OUTPUTS = ("logits", "embedding", "features", "spectrogram")

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool, outputs=None) -> dict[str, Any]:
    """Returns "logits", "embedding", "features" (each block's map) and "spectrogram" (the
    network's input): all with `outputs=None`, only the named ones otherwise."""
    wanted = requested(outputs, self.OUTPUTS, type(self).__name__)
    if x.ndim == 2:
      x = mel_spectrogram(x, self.mel)
    elif x.ndim != 4 or x.shape[1] != self.mel.n_mels or x.shape[-1] != 1:
      raise ValueError(
          f"L3AudioNet expects a waveform [batch, samples] or a spectrogram "
          f"[batch, {self.mel.n_mels}, frames, 1], got shape {tuple(x.shape)}"
      )
    spectrogram = x
    x = keras_batch_norm(train, self.dtype, "input_bn")(jnp.asarray(x, self.dtype))
    he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")
    features = []
    last = len(self.filters) - 1
    for block, width in enumerate(self.filters):
      for conv in (1, 2):
        x = nn.Conv(
            width,
            (3, 3),
            padding="SAME",
            kernel_init=he_normal,
            dtype=self.dtype,
            name=f"block{block + 1}_conv{conv}",
        )(x)
        if not (self.openl3_head and block == last and conv == 2):
          x = nn.relu(keras_batch_norm(train, self.dtype, f"block{block + 1}_bn{conv}")(x))
      features.append(x)
      if block < last:
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    embedding = global_max_pool(x)
    logits = classifier_logits(embedding, self.num_classes, self.dtype)
    return select(
        {
            "logits": logits,
            "embedding": embedding,
            "features": features,
            "spectrogram": spectrogram,
        },
        wanted,
    )


def audio_net(
    filters=(64, 128, 256, 512),
    sample_rate=16000,
    n_fft=1024,
    hop_length=320,
    n_mels=64,
    fmax=0.0,
    num_classes=None,
    dtype=None,
) -> L3AudioNet:
  """An L3AudioNet with its mel front end given as plain numbers (fmax 0: Nyquist), so that a
  config's model_kwargs stay JSON (a MelConfig does not survive config.json)."""
  mel = MelConfig(
      sample_rate=int(sample_rate),
      n_fft=int(n_fft),
      hop_length=int(hop_length),
      n_mels=int(n_mels),
      fmax=float(fmax) or None,
  )
  kwargs = {} if dtype is None else {"dtype": dtype}
  return L3AudioNet(filters=tuple(filters), mel=mel, num_classes=num_classes, **kwargs)


AUDIO_NETS = {
    "l3_teacher": {"filters": (64, 128, 256, 512), "mel": L3_MEL},
    "sea_student0": {"filters": (64, 128, 256, 512), "mel": SEA_STUDENT_MEL},
    "sea_student1": {"filters": (32, 64, 128, 256), "mel": SEA_STUDENT_MEL},
    "sea_student2": {"filters": (32, 64, 128, 128), "mel": SEA_STUDENT_MEL},
    "sea_student3": {"filters": (32, 64, 128, 64), "mel": SEA_STUDENT_MEL},
}

# SEA Table 1: (parameters, float32 megabytes, activation memory in MB).
SEA_TABLE1 = {
    "l3_teacher": (4.69e6, 18.80, 12.74),
    "sea_student0": (4.69e6, 18.80, 0.82),
    "sea_student1": (1.17e6, 4.70, 0.41),
    "sea_student2": (0.58e6, 2.34, 0.41),
    "sea_student3": (0.40e6, 1.60, 0.41),
}
