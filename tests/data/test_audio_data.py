"""Audio decoding / resampling and the manual-dir audio builders on official-layout fixtures.

Independent references: librosa with the soxr resampler (a different algorithm from our
polyphase FIR), soundfile for the raw samples, the fixtures' own metadata for labels and folds.
"""

import collections

import numpy as np
import pytest

from kd_jax import data
from kd_jax.data import audio
from tests.data import audio_fixtures

pytestmark = [
    *audio_fixtures.needs_recordings,
    # librosa (the reference) imports audioread, which uses modules Python 3.13 drops.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:audioread.*"),
]


def _close_signal(ours, reference):
  """Same length (+-1 sample) and nearly the same waveform: correlation and relative error."""
  assert abs(len(ours) - len(reference)) <= 1
  n = min(len(ours), len(reference))
  ours, reference = ours[:n], reference[:n]
  correlation = np.corrcoef(ours, reference)[0, 1]
  relative = np.linalg.norm(ours - reference) / np.linalg.norm(reference)
  assert correlation > 0.995 and relative < 0.1, (correlation, relative)


def test_resample_preserves_a_sine():
  rate, target, freq = 44100, 8000, 440.0
  t = np.arange(rate) / rate
  out = audio.resample(np.sin(2 * np.pi * freq * t), rate, target)
  expected = np.sin(2 * np.pi * freq * np.arange(target) / target)
  assert len(out) == target
  np.testing.assert_allclose(out[200:-200], expected[200:-200], atol=2e-3)


def test_decode_resample_matches_librosa_soxr():
  librosa = pytest.importorskip("librosa")
  for source in (
      audio_fixtures.ASTERISK / "digits" / "5.wav",
      audio_fixtures.SONIC_PI / "ambi_choir.flac",
  ):
    for rate in (48000, 8000):
      ours, ours_rate = audio.decode_audio(source, sample_rate=rate)
      reference, _ = librosa.load(source, sr=rate, mono=True, res_type="soxr_hq")
      assert ours_rate == rate and ours.dtype == np.float32 and ours.ndim == 1
      _close_signal(ours, reference)


def test_decode_mono_is_channel_mean_and_bytes_work():
  import soundfile

  path = audio_fixtures.SONIC_PI / "ambi_choir.flac"
  stereo, rate = soundfile.read(path, dtype="float32")
  assert stereo.ndim == 2
  mono, mono_rate = audio.decode_audio(path.read_bytes())
  assert mono_rate == rate
  np.testing.assert_allclose(mono, stereo.mean(axis=1), atol=1e-7)
  with pytest.raises(ValueError, match="Could not decode"):
    audio.decode_audio(b"not audio")


def test_crop_or_pad():
  x = np.arange(10, dtype=np.float32)
  np.testing.assert_array_equal(audio.crop_or_pad(x, 4), [3, 4, 5, 6])
  np.testing.assert_array_equal(audio.crop_or_pad(x, 12), list(range(10)) + [0, 0])
  starts = {audio.crop_or_pad(x, 4, rng=np.random.default_rng(s))[0] for s in range(200)}
  assert starts == set(range(7))


@pytest.fixture(scope="module")
def us8k(tmp_path_factory):
  root = tmp_path_factory.mktemp("UrbanSound8K")
  rows = audio_fixtures.write_urbansound8k(root)
  return root, rows, str(tmp_path_factory.mktemp("us8k_tfds"))


def test_urbansound8k_folds_labels_and_audio(us8k):
  root, rows, data_dir = us8k
  librosa = pytest.importorskip("librosa")
  by_name = {r["slice_file_name"]: r for r in rows}
  per_fold = collections.Counter(r["fold"] for r in rows)
  for fold in range(1, 11):
    source = data.get_source("urbansound8k", f"fold{fold}", data_dir=data_dir, manual_dir=root)
    assert len(source) == per_fold[fold]
    for i in range(len(source)):
      record = source[i]
      row = by_name[record["filename"]]
      assert int(record["label"]) == row["classID"] and int(record["fold"]) == fold
      assert int(record["sample_rate"]) == 48000 and record["audio"].dtype == np.float32
      reference, _ = librosa.load(
          root / "audio" / f"fold{fold}" / row["slice_file_name"],
          sr=48000,
          mono=True,
          res_type="soxr_hq",
      )
      _close_signal(record["audio"], reference)
  nine_folds = "+".join(f"fold{k}" for k in range(1, 10))
  cross_validation_train = data.get_source(
      "urbansound8k", nine_folds, data_dir=data_dir, manual_dir=root
  )
  assert len(cross_validation_train) == len(rows) - per_fold[10]


def test_urbansound8k_8k_config_and_audio_pipeline(us8k):
  root, rows, data_dir = us8k
  source = data.get_source("urbansound8k/8k", "fold1+fold2", data_dir=data_dir, manual_dir=root)
  assert int(source[0]["sample_rate"]) == 8000
  it = data.train_loader(
      source,
      batch_size=2,
      seed=0,
      shard_index=0,
      shard_count=1,
      transforms=[audio.CropOrPadAudio(seconds=0.5)],
  )
  batch = next(it)
  assert batch["audio"].shape == (2, 4000) and batch["audio"].dtype == np.float32
  eval_batches = list(
      data.eval_batches(
          source,
          batch_size=3,
          shard_index=0,
          shard_count=1,
          transforms=[audio.CropOrPadAudio(0.5, random=False)],
      )
  )
  assert sum(int(b["mask"].sum()) for b in eval_batches) == len(source)
  # Teacher at 48 kHz and student at 8 kHz from one stored clip, cropped to the same span.
  teacher_rate = data.get_source("urbansound8k", "fold1", data_dir=data_dir, manual_dir=root)
  pair = next(
      data.train_loader(
          teacher_rate,
          batch_size=2,
          seed=0,
          shard_index=0,
          shard_count=1,
          transforms=[
              audio.CropOrPadAudio(seconds=0.5),
              audio.ResampleAudio(8000, out_key="audio_8k"),
          ],
      )
  )
  assert pair["audio"].shape == (2, 24000) and pair["audio_8k"].shape == (2, 4000)
  np.testing.assert_allclose(pair["audio_8k"][0], audio.resample(pair["audio"][0], 48000, 8000))
  with pytest.raises(ValueError, match="different shapes"):
    next(data.train_loader(source, batch_size=3, seed=0, shard_index=0, shard_count=1))


def test_esc50_folds_categories_and_length(tmp_path_factory):
  root = tmp_path_factory.mktemp("ESC-50")
  rows = audio_fixtures.write_esc50(root)
  data_dir = str(tmp_path_factory.mktemp("esc50_tfds"))
  by_name = {r["filename"]: r for r in rows}
  total = 0
  for fold in range(1, 6):
    source = data.get_source("esc50", f"fold{fold}", data_dir=data_dir, manual_dir=root)
    total += len(source)
    for i in range(len(source)):
      record = source[i]
      row = by_name[record["filename"]]
      assert int(record["label"]) == row["target"] and record["category"] == row["category"]
      assert int(record["fold"]) == fold == row["fold"]
      assert bool(record["esc10"]) == (row["esc10"] == "True")
      assert record["audio"].shape == (5 * 48000,)
  assert total == len(rows)
  crow = [r for r in rows if r["category"] == "crow"]
  assert crow and crow[0]["filename"].endswith("-9.wav")


def test_sonyc_ust_splits_and_multilabel_targets(tmp_path_factory):
  root = tmp_path_factory.mktemp("SONYC-UST")
  recordings = audio_fixtures.write_sonyc_ust(root)
  data_dir = str(tmp_path_factory.mktemp("sonyc_tfds"))
  expected = {
      name: (split, np.array(targets, np.float32), any(a == 0 for a, _ in annotations))
      for name, split, _, annotations, targets in recordings
  }
  seen = set()
  for split, official in (("train", "train"), ("validation", "validate"), ("test", "test")):
    source = data.get_source("sonyc_ust/8k", split, data_dir=data_dir, manual_dir=root)
    assert len(source) == sum(1 for r in recordings if r[1] == official)
    for i in range(len(source)):
      record = source[i]
      want_split, want_targets, want_verified = expected[record["filename"]]
      assert record["fold"] == want_split == official
      np.testing.assert_array_equal(record["label"], want_targets)
      assert bool(record["verified"]) == want_verified
      assert record["audio"].shape == (10 * 8000,)
      seen.add(record["filename"])
  assert seen == set(expected)


def test_manual_dir_errors_say_what_is_missing(tmp_path):
  with pytest.raises(FileNotFoundError, match="manual_dir"):
    data.get_source("esc50", "fold1", data_dir=str(tmp_path / "d1"))
  with pytest.raises(FileNotFoundError, match="UrbanSound8K.csv"):
    data.get_source("urbansound8k", "fold1", data_dir=str(tmp_path / "d2"), manual_dir=tmp_path)
  root = tmp_path / "esc"
  rows = audio_fixtures.write_esc50(root)
  (root / "audio" / rows[3]["filename"]).unlink()
  with pytest.raises(FileNotFoundError, match=rows[3]["filename"]):
    data.get_source("esc50/8k", "fold1", data_dir=str(tmp_path / "d3"), manual_dir=root)
  csv_path = root / "meta" / "esc50.csv"
  csv_path.write_text(csv_path.read_text().replace("category", "kategorie", 1))
  with pytest.raises(ValueError, match="category"):
    data.get_source("esc50/8k", "fold1", data_dir=str(tmp_path / "d4"), manual_dir=root)


def test_offline_sonic_pi_corpus_reads_through_the_urbansound8k_builder(tmp_path_factory):
  from kd_jax.data import offline_audio

  data_dir = str(tmp_path_factory.mktemp("sonic_pi_tfds"))
  # Reference: class sizes straight from the Debian package's file names.
  names = [p.name.split("_")[0] for p in audio_fixtures.SONIC_PI.glob("*.flac")]
  expected = collections.Counter(
      offline_audio.SONIC_PI_CLASSES.index(n) for n in names if n in offline_audio.SONIC_PI_CLASSES
  )
  folds = "+".join(f"fold{k}" for k in range(1, 11))
  source = data.get_source("sonic_pi/8k", folds, data_dir=data_dir)
  assert source.info.features["label"].names == list(offline_audio.SONIC_PI_CLASSES)
  labels = collections.Counter()
  for i in range(len(source)):
    record = source[i]
    labels[int(record["label"])] += 1
    assert 0 < len(record["audio"]) <= 4 * 8000
  assert labels == expected and len(source) == sum(expected.values()) == 150
  per_fold = [
      len(data.get_source("sonic_pi/8k", f"fold{k}", data_dir=data_dir)) for k in range(1, 11)
  ]
  assert sum(per_fold) == 150 and max(per_fold) - min(per_fold) <= 10  # Dealt round-robin.
