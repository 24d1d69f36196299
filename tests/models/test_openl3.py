"""The openl3 converter on a file Keras itself wrote in openl3's layout
(scripts/make_openl3_fixture.py: openl3's mel256 audio network at widths 4/4/8/8, its files' layer
names, deterministic weights).

The strongest check is the last Keras one: our flax model with the converted weights gives Keras's
embedding for the same spectrogram. The front ends are checked against kapre 0.3.5's own output
(openl3 ≥ 0.4, in the fixture) and against librosa for kapre 0.1.4's formula (the training one).
"""

import dataclasses
import os
import pathlib
import shutil

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax.models import audio, openl3
from kd_jax.train import build

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
WEIGHTS = FIXTURES / "openl3_audio_mel256_music_tiny.h5"
REFERENCE = np.load(FIXTURES / "openl3_keras_reference.npz")
TINY = tuple(int(w) for w in REFERENCE["widths"])
# Keras layer -> flax module of the tiny network, spelled out rather than derived.
MAPPING = {
    "batch_normalization_1": "input_bn",
    "conv2d_1": "block1_conv1",
    "batch_normalization_2": "block1_bn1",
    "conv2d_2": "block1_conv2",
    "batch_normalization_3": "block1_bn2",
    "conv2d_3": "block2_conv1",
    "batch_normalization_4": "block2_bn1",
    "conv2d_4": "block2_conv2",
    "batch_normalization_5": "block2_bn2",
    "conv2d_5": "block3_conv1",
    "batch_normalization_6": "block3_bn1",
    "conv2d_6": "block3_conv2",
    "batch_normalization_7": "block3_bn2",
    "conv2d_7": "block4_conv1",
    "batch_normalization_8": "block4_bn1",
    "audio_embedding_layer": "block4_conv2",
}
LEAVES = {
    "kernel": ("params", "kernel"),
    "bias": ("params", "bias"),
    "gamma": ("params", "scale"),
    "beta": ("params", "bias"),
    "moving_mean": ("batch_stats", "mean"),
    "moving_variance": ("batch_stats", "var"),
}


def tiny_model(path=WEIGHTS, **overrides):
  mel = dataclasses.replace(openl3.OPENL3_MEL, n_mels=REFERENCE["spectrogram"].shape[1])
  fields = dict(filters=TINY, mel=mel, openl3_head=True, weights=str(path))
  return openl3.OpenL3AudioNet(**{**fields, **overrides})


def load(model):
  x = jnp.asarray(REFERENCE["spectrogram"])
  return model.load_pretrained(model.init(jax.random.key(0), x, train=False))


def test_every_keras_weight_lands_in_its_flax_leaf_unchanged():
  variables = load(tiny_model())
  count = 0
  with h5py.File(WEIGHTS, "r") as f:
    for layer, module in MAPPING.items():
      for weight in f[layer].attrs["weight_names"]:
        weight = weight.decode() if isinstance(weight, bytes) else weight
        collection, leaf = LEAVES[weight.split("/")[1].split(":")[0]]
        keras_array = np.asarray(f[layer][weight])  # kernels: HWIO in Keras and flax alike
        np.testing.assert_array_equal(variables[collection][module][leaf], keras_array)
        count += keras_array.size
  assert count == sum(a.size for a in jax.tree.leaves(variables))
  assert "block4_bn2" not in variables["params"]  # OpenL3 has no BatchNorm after its embedding


def test_flax_model_reproduces_the_keras_embedding():
  model = tiny_model()
  variables = load(model)
  out = model.apply(variables, jnp.asarray(REFERENCE["spectrogram"]), train=False)
  np.testing.assert_allclose(out["embedding"], REFERENCE["embedding"], rtol=1e-5, atol=1e-5)


def _rewrite(tmp_path, name, edit):
  """A copy of the fixture named `name`, changed by `edit(h5py.File)`."""
  path = tmp_path / name
  shutil.copy(WEIGHTS, path)
  with h5py.File(path, "r+") as f:
    edit(f)
  return path


def _model_save_layout(f):
  """Keras's `model.save` file: the same layers under model_weights/."""
  group = f.create_group("model_weights")
  for key, value in f.attrs.items():
    group.attrs[key] = value
  for name in list(f):
    if name != "model_weights":
      f.move(name, f"model_weights/{name}")
  for key in list(f.attrs):
    del f.attrs[key]


def _with_kapre_layer(f):
  """A pre-0.4 openl3 file: kapre 0.1.4's spectrogram layer, with weights, after the input."""
  layer = f.create_group("melspectrogram_1")
  names = ["melspectrogram_1/real_kernels:0", "melspectrogram_1/freq2mel:0"]
  layer.attrs["weight_names"] = np.array([n.encode() for n in names])
  for name in names:
    layer.create_dataset(name, data=np.ones((4, 3), np.float32))
  names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
  f.attrs["layer_names"] = np.array([x.encode() for x in names[:1] + [layer.name[1:]] + names[1:]])


@pytest.mark.parametrize("edit", [_model_save_layout, _with_kapre_layer])
def test_other_keras_layouts_give_the_same_variables(tmp_path, edit):
  expected = load(tiny_model())
  got = load(tiny_model(_rewrite(tmp_path, WEIGHTS.name, edit)))
  jax.tree.map(np.testing.assert_array_equal, got, expected)


def _wider_embedding_layer(f):
  """An embedding layer of 16 filters where the model has 8."""
  layer = f["audio_embedding_layer/audio_embedding_layer"]
  for weight, shape in (("kernel:0", (3, 3, 8, 16)), ("bias:0", (16,))):
    del layer[weight]
    layer.create_dataset(weight, data=np.zeros(shape, np.float32))


def _drop_embedding_layer(f):
  names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
  f.attrs["layer_names"] = np.array([n.encode() for n in names if n != "audio_embedding_layer"])


@pytest.mark.parametrize(
    "filters, name, edit, message",
    [
        (TINY, None, _wider_embedding_layer, r"'audio_embedding_layer' \(block4_conv2\) kernel"),
        ((4, 8, 8, 8), None, None, r"'conv2d_3' \(block2_conv1\) kernel .* filters are"),
        (TINY, None, _drop_embedding_layer, "layer for block4_conv2 missing"),
        (TINY, "openl3_audio_linear_music.h5", None, "linear file, but the model's input"),
        (TINY, "openl3_image_mel256_env.h5", None, "image mel256 file"),
    ],
    ids=["embedding_size", "width", "missing_layer", "linear_file", "image_file"],
)
def test_a_file_that_does_not_fit_is_one_line_naming_the_layer(
    tmp_path, filters, name, edit, message
):
  path = _rewrite(tmp_path, name or WEIGHTS.name, edit or (lambda f: None))
  with pytest.raises(ValueError, match=message) as error:
    load(tiny_model(path, filters=filters))
  assert "\n" not in str(error.value)


def test_a_model_with_a_batch_norm_after_the_embedding_is_refused():
  with pytest.raises(ValueError, match=r"\['block4_bn2'\] have no counterpart"):
    load(tiny_model(openl3_head=False))


def test_missing_file_names_where_to_put_it(tmp_path):
  with pytest.raises(FileNotFoundError, match="KD_JAX_OPENL3_WEIGHTS") as error:
    load(tiny_model(tmp_path / "absent.h5"))
  assert "openl3_audio_mel256_music.h5" in str(error.value) and "\n" not in str(error.value)


def test_full_size_teacher_has_openl3s_shapes_and_parameter_count():
  teacher = openl3.openl3_teacher("unused.h5")
  shapes = jax.eval_shape(
      lambda: teacher.init(jax.random.key(0), jnp.zeros((1, 48_000)), train=False)
  )
  targets = openl3._targets(openl3.WIDTHS)  # pylint: disable=protected-access
  expected = {module: shapes for _, module, shapes in targets}
  for module, leaves in expected.items():
    conv = "kernel" in leaves
    assert (
        shapes["params"][module]["kernel" if conv else "scale"].shape
        == leaves["kernel" if conv else "gamma"]
    )
  assert set(shapes["params"]) == set(expected)
  # Keras's count for openl3's embedding model (BatchNorm moving statistics included).
  assert sum(a.size for a in jax.tree.leaves(shapes)) == 4_689_860
  out = jax.eval_shape(
      lambda v: teacher.apply(v, jnp.zeros((1, 48_000)), train=False, outputs=("embedding",)),
      shapes,
  )
  assert out["embedding"].shape == (1, 512)


def assert_same_spectrogram(ours, reference):
  """Equal to 0.02 where the reference is above −50 (kapre's units: a magnitude 1e-5 of the
  maximum); below, float32 STFTs are rounding noise (kapre's as ours, against float64), so there
  the magnitudes relative to the maximum must agree to 1e-6."""
  loud = reference > -50.0
  np.testing.assert_allclose(ours[loud], reference[loud], atol=0.02)
  np.testing.assert_allclose(10 ** (ours / 10), 10 ** (reference / 10), atol=1e-6)


def test_kapre_035_front_end_matches_kapre():
  """openl3 ≥ 0.4's front end, our MelConfig against kapre's own output (0.1 s of a chirp and of
  quieter noise: each example is referenced to its own maximum)."""
  config = openl3.openl3_mel("mel256", "kapre0.3.5")
  ours = np.asarray(audio.mel_spectrogram(jnp.asarray(REFERENCE["waveform"]), config))
  kapre = REFERENCE["kapre_mel"]
  assert ours.shape == kapre.shape == (2, 256, 20, 1)
  assert_same_spectrogram(ours, kapre)


@pytest.mark.filterwarnings("ignore:Empty filters detected:UserWarning")  # as OpenL3's own
def test_kapre_014_front_end_matches_librosa():
  """The training front end, sqrt(mel of |X|²) with HTK filters and Keras "same" padding, against
  librosa on the same zero-padded signal; 10·log10 of that magnitude, as kapre 0.1.4."""
  librosa = pytest.importorskip("librosa")
  assert audio.padding_amounts(48_000, openl3.OPENL3_MEL) == (982, 982)
  assert audio.frame_count(48_000, openl3.OPENL3_MEL) == 199
  assert audio.padding_amounts(48_000, openl3.FRONTENDS["kapre0.3.5"]) == (0, 1964)
  waveform = REFERENCE["waveform"]
  ours = np.asarray(audio.mel_spectrogram(jnp.asarray(waveform), openl3.OPENL3_MEL))
  for example, clip in enumerate(waveform.astype(np.float64)):
    power_mel = librosa.feature.melspectrogram(
        y=np.pad(clip, (923, 923)),  # TF "same": (20 − 1)·242 + 2048 − 4800 = 1846 zeros
        sr=48_000,
        n_fft=2048,
        hop_length=242,
        n_mels=256,
        htk=True,
        norm="slaney",
        power=2.0,
        center=False,
        window="hann",
    )
    db = 10.0 * np.log10(np.maximum(np.sqrt(power_mel), 1e-10))
    expected = np.maximum(db - db.max(), -80.0)
    assert_same_spectrogram(ours[example, ..., 0], expected)


def test_sea_paper_teacher_loads_through_the_converter(monkeypatch, tmp_path):
  from experiments.configs import sea  # pylint: disable=g-import-not-at-top

  path = str(tmp_path / "openl3_audio_mel256_music.h5")
  monkeypatch.setenv("KD_JAX_OPENL3_WEIGHTS", path)
  spec = sea.teacher_spec(sea.settings("paper"))
  assert spec.pretrained and spec.model == "kd_jax.models.openl3:openl3_teacher"
  teacher = build.build_model(spec.model, 1, spec.model_kwargs)
  assert isinstance(teacher, openl3.OpenL3AudioNet) and teacher.weights == path
  assert teacher.mel == openl3.OPENL3_MEL
  with pytest.raises(FileNotFoundError, match=f"openl3 weights not found at '{path}'"):
    teacher.load_pretrained({})
  assert not os.path.exists(path)
