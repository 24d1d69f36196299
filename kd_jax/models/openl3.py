"""The OpenL3 audio teacher of SEA's `paper` table, from openl3's Keras weights file.

OpenL3 (marl/openl3; Cramer et al., ICASSP 2019) ships each audio model as a Keras 2 HDF5 weights
file, `openl3_audio_<input_repr>_<content_type>.h5` (input_repr linear / mel128 / mel256,
content_type music / env), which its setup.py downloads: nothing here fetches it. Give its path
(`openl3_teacher(weights=...)`; the SEA config reads $KD_JAX_OPENL3_WEIGHTS).

File layout, as Keras 2's `save_weights` writes it (openl3 loads it with `model.load_weights`;
its 0.4 migration edited the root's `layer_names` attribute, so the layers sit at the root; a
`model.save` file keeps the same under `model_weights/`, and both are read):

  attrs  layer_names (every layer, weightless ones too), backend, keras_version
  <layer>/                       attrs weight_names, e.g. [b"conv2d_1/kernel:0", b"conv2d_1/bias:0"]
  <layer>/<layer>/<weight>:0     the arrays

Keras's `load_weights` matches the layers that have weights by their order, not their names, and
so does this converter; the names only go into error messages. The 16 layers with weights, in
the order of openl3's `_construct_mel256_audio_network`, map onto `L3AudioNet(openl3_head=True)`:

  batch_normalization_1       -> input_bn
  conv2d_1, conv2d_2          -> block1_conv1, block1_conv2   (block b: conv2d_{2b-1}, conv2d_{2b})
  batch_normalization_2, _3   -> block1_bn1, block1_bn2       (batch_normalization_{2b}, _{2b+1})
  ... blocks 2, 3 alike; block 4: conv2d_7, batch_normalization_8 -> block4_conv1, block4_bn1
  audio_embedding_layer       -> block4_conv2: no BatchNorm or ReLU after it in OpenL3

  kernel (3, 3, in, out) -> params kernel, unchanged: Keras and flax both store HWIO, with H the
                            mel axis and W the time axis in both (input [batch, mels, frames, 1])
  bias -> bias; gamma / beta -> params scale / bias; moving_mean / moving_variance -> batch_stats
  mean / var (Keras BatchNormalization: epsilon 1e-3, `keras_batch_norm`)

The embedding: openl3 max-pools the 32×24×512 map of `audio_embedding_layer` with (32, 24) (mel256;
(16, 24) for mel128) into 512 values, the global max-pool of `L3AudioNet`. Its 6144-d variant
((8, 8) pools, flattened) is not built here. Files from before openl3 0.4 also hold the weights of
kapre 0.1.4's spectrogram layer (DFT kernels and mel filterbank); openl3 0.4 deleted them from
its files, and they are skipped here too (a layer whose name contains "spectrogram"): the front
end below recomputes them.

Front end. OpenL3 computes the spectrogram inside the Keras model with kapre. The weights were
trained with kapre 0.1.4 (l3embedding, openl3 ≤ 0.3; SEA's code, on TensorFlow 1.12, builds its
L3 models with kapre 0.1's Melspectrogram too); openl3 ≥ 0.4 switched to kapre 0.3.5 without
retraining. Both are reproduced by MelConfig:

  step          kapre 0.1.4 ("kapre0.1.4", default)      kapre 0.3.5 ("kapre0.3.5")
  window        periodic Hann, 2048                       periodic Hann (tf.signal), 2048
  padding       Keras conv "same": 1964 zeros, 982 on     tf.signal.stft(pad_end=True): all
                each side of 1 s -> 199 frames of hop 242 after the signal -> 199 frames
                MelConfig padding="same"                  MelConfig padding="end"
  mel scale     HTK (openl3 passed htk=True)              Slaney (kapre 0.3's default)
  filters       0–24 kHz, area-normalised (librosa norm=1 then = "slaney"); MelConfig norm="slaney"
  mel           sqrt(Σ_f |X_f|² H_fm): mel of the power   Σ_f |X_f| H_fm: mel of the magnitude
                spectrum, then the square root            (power=1)
                (power=2, db_power=0.5)
  log           10·log10(max(mel, 1e-10)) minus each example's maximum, floored at −80: both
                (openl3 0.4 copies kapre 0.1.4's function); MelConfig amin=1e-10, top_db=80,
                db_power as above

What matches: every step above, so the arithmetic is the same; what remains is float32 rounding
(kapre 0.1.4 convolves with explicit cos/sin kernels, kapre 0.3.5 and we use an FFT): equal to
0.01 above −50 (a magnitude 1e-5 of the maximum), rounding noise below, in kapre's float32 STFT
as in ours (tests/models/test_openl3.py: against kapre 0.3.5's own output, and against librosa
in float64 for kapre 0.1.4's formula, which has no TensorFlow 2 build). Note the log: 10·log10 of a
magnitude is half a true decibel, so the input spans 80 of these units (160 dB), not kd_jax's
default 80 dB; the input BatchNorm's statistics were fitted on this scale, which is why it must
match. Not matched, because they are the data pipeline's and not the model's: openl3's
resampling to 48 kHz (resampy, kaiser_best) and its 1 s framing (hop 0.1 s, a half-window of
zeros before the first). The "linear" representation (a 257-bin STFT magnitude, no mel) is not a
MelConfig and is refused.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import jax.numpy as jnp
import numpy as np

from kd_jax.models.audio import L3AudioNet, MelConfig

WIDTHS = (64, 128, 256, 512)
INPUT_REPRS = {"mel128": 128, "mel256": 256}
FRONTENDS = {
    "kapre0.1.4": MelConfig(
        sample_rate=48_000,
        n_fft=2048,
        hop_length=242,
        n_mels=256,
        power=2.0,
        htk=True,
        norm="slaney",
        padding="same",
        amin=1e-10,
        top_db=80.0,
        db_power=0.5,
    ),
    "kapre0.3.5": MelConfig(
        sample_rate=48_000,
        n_fft=2048,
        hop_length=242,
        n_mels=256,
        power=1.0,
        htk=False,
        norm="slaney",
        padding="end",
        amin=1e-10,
        top_db=80.0,
        db_power=1.0,
    ),
}
OPENL3_MEL = FRONTENDS["kapre0.1.4"]
WEIGHTS_FILE = "openl3_audio_mel256_music.h5"
_FILE_NAME = re.compile(r"openl3_(audio|image)_(linear|mel128|mel256)_(music|env)")
_CONV = ("kernel", "bias")
_BATCH_NORM = ("gamma", "beta", "moving_mean", "moving_variance")


def openl3_mel(input_repr: str = "mel256", frontend: str = "kapre0.1.4") -> MelConfig:
  """The MelConfig of openl3's `input_repr` with kapre `frontend` (see the module docstring)."""
  if input_repr not in INPUT_REPRS:
    raise ValueError(
        f"openl3 input_repr must be one of {sorted(INPUT_REPRS)} (linear is no mel), "
        f"got {input_repr!r}"
    )
  if frontend not in FRONTENDS:
    raise ValueError(f"openl3 frontend must be one of {sorted(FRONTENDS)}, got {frontend!r}")
  return dataclasses.replace(FRONTENDS[frontend], n_mels=INPUT_REPRS[input_repr])


def _text(value) -> str:
  return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _string_list_attr(group, name: str) -> list[str]:
  """A Keras list attribute; Keras splits one over 64 KB into name0, name1, ..."""
  if name in group.attrs:
    return [_text(v) for v in group.attrs[name]]
  values, chunk = [], 0
  while f"{name}{chunk}" in group.attrs:
    values += [_text(v) for v in group.attrs[f"{name}{chunk}"]]
    chunk += 1
  return values


def read_keras_weights(path: str) -> list[tuple[str, dict[str, np.ndarray]]]:
  """(layer name, {weight: array}) of each layer with weights, in the file's order; the weight
  key is the name without scope and ":0" ("conv2d_1/kernel:0" -> "kernel")."""
  import h5py  # pylint: disable=g-import-not-at-top  (only for reading the file)

  with h5py.File(path, "r") as f:
    root = f
    if "layer_names" not in f.attrs and "model_weights" in f:
      root = f["model_weights"]  # a `model.save` file
    names = _string_list_attr(root, "layer_names")
    if not names:
      raise ValueError(f"{path}: no layer_names attribute: not a Keras 2 HDF5 weights file.")
    layers = []
    for name in names:
      if name not in root:
        raise ValueError(f"{path}: layer {name!r} is listed in layer_names but absent.")
      group = root[name]
      weights = {}
      for weight in _string_list_attr(group, "weight_names"):
        weights[weight.split("/")[-1].split(":")[0]] = np.asarray(group[weight])
      if weights:
        layers.append((name, weights))
  return layers


def _targets(filters) -> list[tuple[str, str, dict[str, tuple[int, ...]]]]:
  """(kind, flax name, {weight: shape}) of each layer with weights, in Keras's order."""
  targets = [("bn", "input_bn", {w: (1,) for w in _BATCH_NORM})]
  previous = 1
  for block, width in enumerate(filters, 1):
    for conv in (1, 2):
      shapes = {"kernel": (3, 3, previous, width), "bias": (width,)}
      targets.append(("conv", f"block{block}_conv{conv}", shapes))
      previous = width
      if not (block == len(filters) and conv == 2):
        targets.append(("bn", f"block{block}_bn{conv}", {w: (width,) for w in _BATCH_NORM}))
  return targets


def _kind(weights: dict[str, np.ndarray]) -> str:
  keys = tuple(weights)
  return {_CONV: "conv", _BATCH_NORM: "bn"}.get(keys, "other " + "/".join(keys))


def convert_openl3_weights(
    layers: list[tuple[str, dict[str, np.ndarray]]], filters=WIDTHS, source: str = "openl3"
) -> dict[str, dict]:
  """{"params", "batch_stats"} of `L3AudioNet(filters, openl3_head=True)` from the layers of
  `read_keras_weights`; every shape is checked, and a mismatch is one line naming the layer."""
  layers = [(name, w) for name, w in layers if "spectrogram" not in name]  # kapre 0.1.4's
  targets = _targets(filters)
  variables: dict[str, dict] = {"params": {}, "batch_stats": {}}
  for index, (kind, target, shapes) in enumerate(targets):
    if index >= len(layers):
      raise ValueError(
          f"{source}: layer for {target} missing: the file has {len(layers)} layers with "
          f"weights, an OpenL3 audio network {len(targets)}."
      )
    name, weights = layers[index]
    if _kind(weights) != kind:
      raise ValueError(
          f"{source}: layer {name!r} holds {'/'.join(weights)} where {target} needs "
          f"{'/'.join(shapes)}: not an OpenL3 audio network's layer order."
      )
    for weight, want in shapes.items():
      have = tuple(weights[weight].shape)
      if have != want:
        hint = ""
        if target == "input_bn":
          hint = " (an image network has 3 input channels: use openl3_audio_*)"
        else:
          hint = f" (the model's filters are {tuple(filters)})"
        raise ValueError(
            f"{source}: layer {name!r} ({target}) {weight} has shape {have}, expected "
            f"{want}{hint}."
        )
    if kind == "conv":
      variables["params"][target] = {"kernel": weights["kernel"], "bias": weights["bias"]}
    else:
      variables["params"][target] = {"scale": weights["gamma"], "bias": weights["beta"]}
      variables["batch_stats"][target] = {
          "mean": weights["moving_mean"],
          "var": weights["moving_variance"],
      }
  if len(layers) > len(targets):
    extra = ", ".join(name for name, _ in layers[len(targets) :])
    raise ValueError(
        f"{source}: layers with weights after audio_embedding_layer ({extra}): not an OpenL3 "
        "audio embedding model (a training model keeps a BatchNorm after it)."
    )
  return variables


def check_file_name(path: str, input_repr: str) -> None:
  """openl3 names its files by representation: refuse one that names another (the weights'
  shapes are the same for every representation, so the name is the only place it shows)."""
  match = _FILE_NAME.search(os.path.basename(path))
  if match and (match.group(1) != "audio" or match.group(2) != input_repr):
    raise ValueError(
        f"{path}: an openl3 {match.group(1)} {match.group(2)} file, but the model's input is "
        f"audio {input_repr}; use openl3_audio_{input_repr}_<music|env>.h5."
    )


def load_openl3_weights(path: str, filters=WIDTHS, input_repr: str = "mel256") -> dict:
  """Reads and converts openl3's file: {"params", "batch_stats"} as float32 jax arrays."""
  if not path or not os.path.isfile(path):
    raise FileNotFoundError(
        f"openl3 weights not found at {path!r}: put openl3's {WEIGHTS_FILE} (its models "
        "branch, gunzipped) there, or set $KD_JAX_OPENL3_WEIGHTS to its path."
    )
  check_file_name(path, input_repr)
  converted = convert_openl3_weights(read_keras_weights(path), filters, source=path)
  return {
      collection: {
          layer: {k: jnp.asarray(v, jnp.float32) for k, v in leaves.items()}
          for layer, leaves in tree.items()
      }
      for collection, tree in converted.items()
  }


class OpenL3AudioNet(L3AudioNet):
  """`L3AudioNet` with OpenL3's head whose `load_pretrained` (called by the trainer after
  `init`) reads openl3's weights file `weights`; a classifier head, if any, stays random."""

  weights: str = ""
  input_repr: str = "mel256"

  def load_pretrained(self, variables):
    loaded = load_openl3_weights(self.weights, self.filters, self.input_repr)
    out = dict(variables)
    for collection in ("params", "batch_stats"):
      mine = {k: v for k, v in variables[collection].items() if k != "classifier"}
      missing = sorted(set(mine) - set(loaded[collection]))
      if missing:  # block4_bn2 when built without openl3_head
        raise ValueError(
            f"{self.weights}: the model's {collection} {missing} have no counterpart in an "
            "OpenL3 file; build it with openl3_head=True (openl3_teacher does)."
        )
      out[collection] = {**variables[collection], **loaded[collection]}
    return out


def openl3_teacher(
    weights: str = "",
    *,
    input_repr: str = "mel256",
    frontend: str = "kapre0.1.4",
    num_classes: int | None = None,
    dtype: Any = jnp.float32,
) -> OpenL3AudioNet:
  """OpenL3's audio network (512-d embedding) with the weights of the file `weights`, read when
  the trainer calls `load_pretrained`: a missing file is one line naming where to put it."""
  return OpenL3AudioNet(
      filters=WIDTHS,
      mel=openl3_mel(input_repr, frontend),
      num_classes=num_classes,
      dtype=dtype,
      openl3_head=True,
      weights=weights,
      input_repr=input_repr,
  )
