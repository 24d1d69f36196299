"""SEA's mel front end against librosa on recorded speech; L3 / students against SEA Table 1."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kd_jax.models import audio, get_model, summary
from tests.models.conftest import read_speech

librosa = pytest.importorskip("librosa")

# 256 HTK bands on a 2048-point DFT leave the lowest bands empty; OpenL3 has the same filters.
pytestmark = pytest.mark.filterwarnings("ignore:Empty filters detected:UserWarning")


@pytest.fixture(scope="module")
def speech_8k():
  """One second of a real recorded prompt (Asterisk 'tt-monkeys', 8 kHz) and the next second."""
  recording, rate = read_speech("tt-monkeys.wav")
  assert rate == 8000
  return np.stack([recording[8000:16000], recording[16000:24000]])


def librosa_mel(clip, config, *, center):
  """librosa's HTK/slaney mel of |STFT|^power (float64); "same" padding done by hand."""
  clip = clip.astype(np.float64)
  if not center:
    clip = np.pad(clip, audio.padding_amounts(len(clip), config))
  return librosa.feature.melspectrogram(
      y=clip,
      sr=config.sample_rate,
      n_fft=config.n_fft,
      hop_length=config.hop_length,
      n_mels=config.n_mels,
      htk=True,
      norm="slaney",
      power=config.power,
      center=center,
      pad_mode="constant",
      window="hann",
  )


@pytest.mark.parametrize(
    "config", [audio.SEA_STUDENT_MEL, audio.L3_MEL], ids=["student_8k", "teacher_48k"]
)
def test_filterbank_matches_librosa(config):
  expected = librosa.filters.mel(
      sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, htk=True, norm="slaney"
  )
  np.testing.assert_allclose(audio.mel_filterbank(config), expected.T, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("padding", ["center", "same"])
def test_student_front_end_matches_librosa_on_speech(speech_8k, padding):
  config = dataclasses.replace(audio.SEA_STUDENT_MEL, padding=padding)
  ours = np.asarray(jax.jit(lambda a: audio.mel_spectrogram(a, config))(speech_8k))
  assert ours.shape == (2, 64, 51 if padding == "center" else 50, 1)
  for example, clip in enumerate(speech_8k):
    mel = librosa_mel(clip, config, center=padding == "center")
    np.testing.assert_allclose(
        np.asarray(audio.mel_spectrogram(clip[None], config, decibels=False))[0, ..., 0],
        mel,
        rtol=1e-4,
        atol=1e-6 * mel.max(),
    )
    expected_db = librosa.amplitude_to_db(mel, ref=np.max, amin=1e-5, top_db=80.0)
    np.testing.assert_allclose(ours[example, ..., 0], expected_db, atol=2e-3)


def test_teacher_front_end_gives_256_by_199_at_48k(speech_8k):
  """The L3 teacher's input: 1 s at 48 kHz (speech upsampled ×6 by linear interpolation)."""
  clip = np.interp(np.arange(48_000) / 6.0, np.arange(8000), speech_8k[0]).astype(np.float32)
  ours = np.asarray(audio.mel_spectrogram(clip[None], audio.L3_MEL))
  assert ours.shape == (1, 256, 199, 1)
  expected = librosa.amplitude_to_db(
      librosa_mel(clip, audio.L3_MEL, center=False), ref=np.max, amin=1e-5, top_db=80.0
  )
  np.testing.assert_allclose(ours[0, ..., 0], expected, atol=2e-3)


def test_front_end_errors():
  with pytest.raises(ValueError, match="batch, samples"):
    audio.mel_spectrogram(jnp.zeros(8000), audio.SEA_STUDENT_MEL)
  with pytest.raises(ValueError, match="padding must be"):
    audio.mel_spectrogram(
        jnp.zeros((1, 8000)), dataclasses.replace(audio.SEA_STUDENT_MEL, padding="reflect")
    )


SPECTROGRAM = {
    "l3_teacher": (1, 256, 199, 1),
    "sea_student0": (1, 64, 50, 1),
    "sea_student1": (1, 64, 50, 1),
    "sea_student2": (1, 64, 50, 1),
    "sea_student3": (1, 64, 50, 1),
}


@pytest.mark.parametrize("name", sorted(SPECTROGRAM))
def test_sizes_reproduce_sea_table1(name):
  """Parameters (Keras counts BN moving statistics too) and float32 MB within 1% of Table 1;
  activation memory of one example from XLA's compiled forward pass (temp buffers) beside
  the paper's: within 1% for the students, 2.4% above the paper's 12.74 MB for the teacher."""
  params, megabytes, activation_mb = audio.SEA_TABLE1[name]
  report = summary(get_model(name), jax.ShapeDtypeStruct(SPECTROGRAM[name], jnp.float32))
  assert report["total"] == pytest.approx(params, rel=0.01)
  assert report["bytes"] / 1e6 == pytest.approx(megabytes, rel=0.01)
  tolerance = 0.03 if name == "l3_teacher" else 0.01
  assert report["activation_bytes"] / 1e6 == pytest.approx(activation_mb, rel=tolerance)


@pytest.fixture(scope="module")
def student1():
  model = get_model("sea_student1")
  variables = jax.jit(lambda k, x: model.init(k, x, train=False))(
      jax.random.PRNGKey(0), jnp.zeros((1, 8000))
  )
  return model, variables


def test_student_embeds_real_speech(student1, speech_8k):
  model, variables = student1
  out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, speech_8k)
  assert out["embedding"].shape == (2, 256) and out["logits"] is None
  assert out["spectrogram"].shape == (2, 64, 50, 1)
  assert [f.shape[1:3] for f in out["features"]] == [(64, 50), (32, 25), (16, 12), (8, 6)]
  # Global max-pool: the embedding is the last block's maximum over frequency and time.
  np.testing.assert_allclose(out["embedding"], out["features"][-1].max((1, 2)))
  assert not np.allclose(out["embedding"][0], out["embedding"][1])
  # A spectrogram input skips the front end and gives the same result.
  again = model.apply(variables, out["spectrogram"], train=False)
  np.testing.assert_allclose(again["embedding"], out["embedding"], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="spectrogram"):
    model.apply(variables, jnp.zeros((1, 32, 50, 1)), train=False)


def test_student_in_bfloat16(student1, speech_8k):
  model, variables = student1
  out32 = model.apply(variables, speech_8k, train=False)
  out16 = jax.jit(lambda v, x: model.clone(dtype=jnp.bfloat16).apply(v, x, train=False))(
      variables, speech_8k
  )
  assert out16["features"][0].dtype == jnp.bfloat16
  assert out16["spectrogram"].dtype == jnp.float32  # the front end stays float32
  scale = float(np.abs(np.asarray(out32["embedding"])).max())
  np.testing.assert_allclose(np.float32(out16["embedding"]), out32["embedding"], atol=0.05 * scale)


def _pool_gradient(pool, llvm_level: int):
  """d/dh Σ ct · pool(ReLU(BatchNorm(h))) with train-mode statistics (the end of an L3 network
  in training), compiled once for h [16, 2, 3, 8] with LLVM at `llvm_level`."""
  norm = audio.keras_batch_norm(True, jnp.float32, "bn")

  def pooled(h, ct, variables):
    normalised, _ = norm.apply(variables, h, mutable=["batch_stats"])
    return jnp.sum(pool(jax.nn.relu(normalised)) * ct)

  h, ct = jnp.zeros((16, 2, 3, 8)), jnp.zeros((16, 8))
  variables = {
      "params": {"scale": jnp.ones(8), "bias": jnp.zeros(8)},
      "batch_stats": {"mean": jnp.zeros(8), "var": jnp.ones(8)},
  }
  lowered = jax.jit(jax.grad(pooled)).lower(h, ct, variables)
  return lowered.compile(compiler_options={"xla_backend_optimization_level": llvm_level})


def test_global_max_pool_gradient_is_finite_without_llvm_optimisation():
  """The SEA smoke teacher's non-finite gradient (see `audio.global_max_pool`): with `jnp.max`
  as the pool, 7 of these 10 maps get a +inf gradient at LLVM level 0 (none at the default)."""
  fast_compile = _pool_gradient(audio.global_max_pool, llvm_level=0)
  optimised = _pool_gradient(audio.global_max_pool, llvm_level=2)
  for seed in range(10):
    keys = jax.random.split(jax.random.key(seed), 4)
    h, ct = jax.random.normal(keys[0], (16, 2, 3, 8)), jax.random.normal(keys[1], (16, 8))
    variables = {
        "params": {
            "scale": 1 + 0.01 * jax.random.normal(keys[2], (8,)),
            "bias": 0.01 * jax.random.normal(keys[3], (8,)),
        },
        "batch_stats": {"mean": jnp.zeros(8), "var": jnp.ones(8)},
    }
    gradient = np.asarray(fast_compile(h, ct, variables))
    assert np.isfinite(gradient).all(), seed
    np.testing.assert_allclose(gradient, optimised(h, ct, variables), rtol=1e-4, atol=1e-5)


def test_global_max_pool_takes_the_maximum_and_sends_its_gradient_to_one_position():
  x = jnp.zeros((2, 3, 4, 5)).at[:, 0, 1].set(1.0).at[:, 2, 3].set(1.0)  # two equal maxima
  x = x.at[1, 1, 1, 4].set(2.0)
  value, vjp = jax.vjp(audio.global_max_pool, x)
  np.testing.assert_array_equal(value, np.asarray(x).max((1, 2)))
  ct = jnp.arange(1.0, 11.0).reshape(2, 5)
  (gradient,) = vjp(ct)
  assert ((np.asarray(gradient) != 0).sum((1, 2)) == 1).all()  # one position, not split
  np.testing.assert_array_equal(np.asarray(gradient).sum((1, 2)), ct)
  assert gradient[1, 1, 1, 4] == ct[1, 4]
