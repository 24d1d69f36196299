"""Writes the OpenL3 fixtures of tests/models/test_openl3.py with Keras itself (and kapre 0.3.5).

  python -m venv /tmp/kerasenv
  /tmp/kerasenv/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0 h5py librosa
  /tmp/kerasenv/bin/pip install --no-deps kapre==0.3.5
  TF_USE_LEGACY_KERAS=1 /tmp/kerasenv/bin/python scripts/make_openl3_fixture.py

TensorFlow, Keras and kapre are not kd_jax dependencies: only this script needs them, and the
files it writes are committed. TF_USE_LEGACY_KERAS=1 makes `tf.keras` Keras 2 (tf_keras), whose
`save_weights("….h5")` writes the HDF5 layout openl3's files have (Keras 3 writes another).

1. tests/models/fixtures/openl3_audio_mel256_music_tiny.h5: openl3's mel256 audio network as
   openl3 builds it without its front end (`_construct_mel256_audio_network(include_frontend=
   False)`: the BatchNorm on the spectrogram, four blocks, `audio_embedding_layer` bare) with
   the layer names of openl3's files (Keras 2 auto-names: input_1, batch_normalization_1,
   conv2d_1, activation_1, max_pooling2d_1, ...) but widths 4/4/8/8, so the file is ~30 KB.
   Its weights are deterministic (numpy seed), not trained: the test is of the layout and the
   mapping, which do not depend on the values.
2. tests/models/fixtures/openl3_keras_reference.npz:
   spectrogram [2, 32, 24, 1] and embedding [2, 8]: Keras's output for that input after
     openl3's final MaxPooling2D over the whole map (as its (32, 24) pool for 512-d) + Flatten;
   waveform [2, 4800] (0.1 s at 48 kHz) and kapre_mel [2, 256, 20, 1]: openl3 0.4's front end —
     kapre 0.3.5's melspectrogram layer with openl3's arguments, then 10·log10 relative to each
     example's maximum floored at −80 (openl3's kapre-0.1.4-style decibel function).
"""

from __future__ import annotations

import os
from importlib import metadata

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

keras = tf.keras
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "tests", "models", "fixtures")
WEIGHTS = os.path.join(FIXTURES, "openl3_audio_mel256_music_tiny.h5")
REFERENCE = os.path.join(FIXTURES, "openl3_keras_reference.npz")
WIDTHS = (4, 4, 8, 8)
SPECTROGRAM = (32, 24)  # mel bands × frames; 4 × 3 after three 2×2 pools


def tiny_openl3(widths=WIDTHS, shape=SPECTROGRAM) -> keras.Model:
  """openl3's mel256 audio network (include_frontend=False), its layers named as in its files."""
  count = {}

  def name(kind):
    count[kind] = count.get(kind, 0) + 1
    return f"{kind}_{count[kind]}"

  inputs = keras.Input(shape=(*shape, 1), dtype="float32", name="input_1")
  y = keras.layers.BatchNormalization(name=name("batch_normalization"))(inputs)
  for block, width in enumerate(widths):
    last = block == len(widths) - 1
    for conv in range(2):
      embedding = last and conv == 1
      y = keras.layers.Conv2D(
          width,
          (3, 3),
          padding="same",
          kernel_initializer="he_normal",
          kernel_regularizer=keras.regularizers.l2(1e-5),
          name="audio_embedding_layer" if embedding else name("conv2d"),
      )(y)
      if not embedding:
        y = keras.layers.BatchNormalization(name=name("batch_normalization"))(y)
        y = keras.layers.Activation("relu", name=name("activation"))(y)
    if not last:
      y = keras.layers.MaxPooling2D((2, 2), strides=2, name=name("max_pooling2d"))(y)
  return keras.Model(inputs=inputs, outputs=y)


def set_deterministic_weights(model: keras.Model, rng: np.random.Generator) -> None:
  """Every weight from `rng`: He-scaled kernels, small biases, BatchNorm statistics away from
  (0, 1) so that a swapped mean / variance or gamma / beta would show."""
  for layer in model.layers:
    if isinstance(layer, keras.layers.Conv2D):
      kernel, bias = layer.get_weights()
      fan_in = np.prod(kernel.shape[:3])
      layer.set_weights(
          [
              rng.normal(size=kernel.shape) * np.sqrt(2.0 / fan_in),
              rng.normal(size=bias.shape) * 0.1,
          ]
      )
    elif isinstance(layer, keras.layers.BatchNormalization):
      (channels,) = layer.get_weights()[0].shape
      first = layer.name == "batch_normalization_1"  # on the spectrogram, in kapre's units
      layer.set_weights(
          [
              rng.uniform(0.5, 1.5, channels),
              rng.normal(size=channels) * 0.1,
              np.full(channels, -30.0) if first else rng.normal(size=channels) * 0.2,
              np.full(channels, 200.0) if first else rng.uniform(0.5, 2.0, channels),
          ]
      )


def embedding_model(model: keras.Model) -> keras.Model:
  """openl3's head: MaxPooling2D over the whole final map (padding "same"), then Flatten."""
  pool = keras.layers.MaxPooling2D(model.output_shape[1:3], padding="same", name="embedding_pool")
  flatten = keras.layers.Flatten(name="embedding_flatten")
  return keras.Model(inputs=model.input, outputs=flatten(pool(model.output)))


def kapre_035_mel(waveform: np.ndarray) -> np.ndarray:
  """openl3 0.4's mel256 front end: kapre 0.3.5's layer with openl3's arguments, decibels taken
  as 10·log10(max(x, 1e-10)) minus each example's maximum, floored at −80; [b, 256, t, 1]."""
  from kapre.composed import get_melspectrogram_layer  # pylint: disable=g-import-not-at-top

  samples = waveform.shape[1]
  layer = get_melspectrogram_layer(
      input_shape=(1, samples),
      n_fft=2048,
      hop_length=242,
      n_mels=256,
      sample_rate=48000,
      return_decibel=False,
      pad_end=True,
      input_data_format="channels_first",
      output_data_format="channels_last",
  )
  mel = layer(tf.constant(waveform[:, None, :], tf.float32)).numpy()  # [b, t, mels, 1]
  db = 10.0 * np.log10(np.maximum(mel, 1e-10))
  db = np.maximum(db - db.max(axis=(1, 2, 3), keepdims=True), -80.0)
  return np.transpose(db, (0, 2, 1, 3)).astype(np.float32)


def main() -> None:
  rng = np.random.default_rng(20210606)
  model = tiny_openl3()
  set_deterministic_weights(model, rng)
  model.save_weights(WEIGHTS)

  # The file loads back as openl3 loads its own (`load_weights`, by order) and gives the same.
  spectrogram = rng.uniform(-80.0, 0.0, (2, *SPECTROGRAM, 1)).astype(np.float32)
  reloaded = tiny_openl3()
  reloaded.load_weights(WEIGHTS)
  embedding = embedding_model(reloaded)(spectrogram, training=False).numpy()
  np.testing.assert_array_equal(embedding, embedding_model(model)(spectrogram).numpy())

  t = np.arange(4800) / 48000.0
  chirp = np.sin(2 * np.pi * (200.0 * t + 0.5 * 40000.0 * t**2))
  waveform = np.stack([0.5 * chirp, 0.05 * rng.normal(size=t.size)]).astype(np.float32)
  np.savez_compressed(
      REFERENCE,
      spectrogram=spectrogram,
      embedding=embedding.astype(np.float32),
      widths=np.asarray(WIDTHS),
      waveform=waveform,
      kapre_mel=kapre_035_mel(waveform),
      versions=np.asarray(
          [f"{p} {metadata.version(p)}" for p in ("tensorflow", "tf-keras", "kapre")]
      ),
  )
  for path in (WEIGHTS, REFERENCE):
    print(f"{os.path.relpath(path)}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
  main()
