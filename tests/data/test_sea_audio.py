"""SEA's `cpu` data (kd_jax.data.sea_audio, sea_render) on the real Debian package data.

The sources are built in their "tiny" configs (a handful of clips each) into the session's
temporary data_dir. A test that reads a package is marked with it: under CI=true a missing package
fails the test, locally it skips naming the package (tests/system_data.py).
"""

from __future__ import annotations

import collections

import numpy as np
import pytest

from kd_jax.data import loudness
from kd_jax.data import sea_audio
from kd_jax.data import sea_render
from tests import system_data

ALL_FOLDS = "+".join(f"fold{k}" for k in range(1, 6))


def _has(package: str, suffix: str, fallback_glob: str) -> bool:
  return system_data.find(package, suffix, fallback_glob) is not None


HYDROGEN = system_data.needs(
    "hydrogen-drumkits",
    _has("hydrogen-drumkits", "/drumkit.xml", "/usr/share/hydrogen/data/drumkits/*/drumkit.xml"),
)
SONIC_PI = system_data.needs(
    "sonic-pi-samples",
    _has("sonic-pi-samples", "/bd_808.flac", "/usr/share/sonic-pi/samples/bd_808.flac"),
)
ASTERISK = [
    system_data.needs(
        package,
        _has(package, "/digits/1.wav", f"/usr/share/asterisk/sounds/{language}*/digits/1.wav"),
    )
    for language, package in sea_audio.LANGUAGES.items()
]
FLUIDSYNTH = system_data.needs(
    "fluidsynth", _has("fluidsynth", "/bin/fluidsynth", "/usr/bin/fluidsynth")
)
SOUNDFONTS = {
    name: system_data.needs(
        package, _has(package, f"/{name}.sf2", f"/usr/share/sounds/sf2/{name}.sf2")
    )
    for name, package in sea_render.SOUNDFONTS.items()
}
ESPEAK = system_data.needs("espeak-ng", _has("espeak-ng", "/bin/espeak-ng", "/usr/bin/espeak-ng"))


def test_drum_label_reads_instrument_names():
  cases = {
      'Kick (Tama Superstar 22")': "kick",
      "c3 - bass drum 1": "kick",
      "Snare Rimshot (Pearl Free Floating Maple 14x3.5)": "snare",
      "Rim Click (Pearl Free Floating Maple 14x3.5)": "snare",
      "Pearl Side Stick": "snare",
      "Closed HH 2": "hihat",
      'Hi-Hat Pedal (Paiste Alpha Metal edge 14")': "hihat",
      "tomhi2": "tom",
      'Ride (Custom, Zagrebin 22")': "cymbal",  # the maker in brackets is ignored
      "Ride Bell": "cymbal",
      "Cowbell": "percussion",  # not a cymbal bell
      "Dununba1 Bell Mute": "percussion",
      "Hand Clap": "percussion",
      "Snare Roll": None,  # a roll is no one-shot
      "FX": None,
      "Sample: beats_01-39.flac": None,
      "23": None,
  }
  assert {name: sea_audio.drum_label(name) for name in cases} == cases
  assert sea_audio.sonic_pi_label("drum_cymbal_closed") == "hihat"
  assert sea_audio.sonic_pi_label("drum_cymbal_hard") == "cymbal"
  assert sea_audio.sonic_pi_label("bd_haus") == "kick"
  assert sea_audio.sonic_pi_label("ambi_choir") is None


def test_hydrogen_parser_reads_both_kit_formats(tmp_path):
  # The old format names one file per instrument; the new one one per velocity layer, under a
  # namespace. Missing files are dropped.
  for name in ("k.wav", "s1.flac", "s2.flac"):
    (tmp_path / name).write_bytes(b"")
  (tmp_path / "drumkit.xml").write_text(
      '<?xml version="1.0"?><drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">'
      "<name>Kit</name><instrumentList>"
      "<instrument><id>0</id><filename>k.wav</filename><name>Kick 1</name></instrument>"
      "<instrument><id>1</id><name>Snare</name><layer><filename>s1.flac</filename></layer>"
      "<layer><filename>s2.flac</filename></layer><layer><filename>gone.flac</filename>"
      "</layer></instrument></instrumentList></drumkit_info>"
  )
  parsed = sea_audio.hydrogen_instruments(tmp_path / "drumkit.xml")
  assert parsed == [
      ("Kick 1", [tmp_path / "k.wav"]),
      ("Snare", [tmp_path / "s1.flac", tmp_path / "s2.flac"]),
  ]


def test_kit_folds_keep_kits_whole_and_spread_classes():
  kits = {f"kit{i}": ["kick"] * (i + 1) + ["snare"] * (5 - i) for i in range(5)}
  kits["hands"] = ["percussion"] * 12
  folds = sea_audio.kit_folds(kits)
  assert set(folds) == set(kits) and set(folds.values()) <= set(range(1, 6))
  assert folds == sea_audio.kit_folds(dict(reversed(list(kits.items()))))  # order-free


def test_missing_package_fails_with_one_line_naming_apt(tmp_path, monkeypatch):
  with pytest.raises(sea_audio.MissingDebianPackageError) as error:
    sea_audio.package_paths("kd-no-such-package", ".wav", str(tmp_path / "*.wav"), "test data")
  message = str(error.value)
  assert (
      "\n" not in message
      and "apt-get install --no-install-recommends kd-no-such-package" in message
  )
  # Through a source: it fails before TFDS writes anything.
  monkeypatch.setattr(sea_audio, "LANGUAGES", {"xx": "kd-no-such-package"})
  with pytest.raises(sea_audio.MissingDebianPackageError, match="kd-no-such-package"):
    sea_audio.language_id("fold1", data_dir=tmp_path / "tfds", config="tiny")
  assert not list((tmp_path / "tfds").glob("kd_sea_language/*/*/*.array_record*"))


@HYDROGEN
def test_labels_come_from_drumkit_xml():
  kits = sea_audio.package_paths(
      "hydrogen-drumkits", "/drumkit.xml", "/usr/share/hydrogen/data/drumkits/*/drumkit.xml", "kits"
  )
  assert len(kits) >= 10
  audiophob = next(k for k in kits if k.parent.name == "Audiophob")
  instruments = dict(sea_audio.hydrogen_instruments(audiophob))
  assert instruments["Kick"] and all(p.is_file() for p in instruments["Kick"])
  assert sea_audio.drum_label("Kick") == "kick"
  listed = {}
  for xml in kits:
    for name, files in sea_audio.hydrogen_instruments(xml):
      for path in files:
        listed.setdefault(path, set()).add(name)
  shots = [s for s in sea_audio.drum_one_shots() if s.kit.startswith("hydrogen/")]
  assert len(shots) > 500
  for shot in shots:
    assert shot.instrument in listed[shot.path]
    assert shot.label == sea_audio.drum_label(shot.instrument)


@HYDROGEN
@SONIC_PI
def test_drum_folds_never_share_a_kit(data_dir):
  shots = sea_audio.drum_one_shots()
  folds_of_kit = collections.defaultdict(set)
  for shot in shots:
    folds_of_kit[shot.kit].add(shot.fold)
  assert all(len(folds) == 1 for folds in folds_of_kit.values()), folds_of_kit
  assert {s.fold for s in shots} == set(range(1, 6))
  assert "sonic-pi" in folds_of_kit and len(folds_of_kit) >= 15
  for fold in range(1, 6):  # every fold can score most classes
    assert len({s.label for s in shots if s.fold == fold}) >= 5

  source = sea_audio.drums(ALL_FOLDS, data_dir=data_dir, config="tiny")
  assert source.label_names == sea_audio.DRUM_CLASSES and 5 <= len(source) <= 30
  by_path = {str(s.path): s for s in shots}
  kits_per_fold = collections.defaultdict(set)
  for i in range(len(source)):
    example = source[i]
    shot = by_path[example["filename"]]
    assert int(example["fold"]) == shot.fold and example["kit"] == shot.kit
    assert sea_audio.DRUM_CLASSES[int(example["label"])] == shot.label
    assert example["audio"].shape == (16000,) and int(example["sample_rate"]) == 16000
    assert np.abs(example["audio"][:400]).max() > 0.0  # starts at the onset
    kits_per_fold[shot.kit].add(int(example["fold"]))
    expected = float(loudness.a_weighted_leq(example["audio"], 16000))
    assert float(example["loudness"]) == pytest.approx(expected, abs=1e-3)
  assert all(len(f) == 1 for f in kits_per_fold.values())


def _asterisk(test):
  """All five Asterisk language packages' markers on one test."""
  for marker in ASTERISK:
    test = marker(test)
  return test


@_asterisk
def test_asterisk_languages_are_found_through_the_packages(data_dir):
  prompts = sea_audio.asterisk_prompts()
  assert list(prompts) == ["en", "es", "fr", "it", "ru"]
  ids = set(prompts["en"])
  assert len(ids) > 400 and all(set(p) == ids for p in prompts.values())
  assert "digits/1" in ids and "beep" not in ids and not any(i.startswith("silence/") for i in ids)
  for language, package in sea_audio.LANGUAGES.items():
    listed = set(system_data.package_files(package))
    assert str(prompts[language]["digits/1"]) in listed  # where dpkg says, not a fixed folder

  source = sea_audio.language_id(ALL_FOLDS, data_dir=data_dir, config="tiny")
  assert source.label_names == ("en", "es", "fr", "it", "ru") and len(source) == 25
  folds = collections.defaultdict(set)
  languages = collections.defaultdict(set)
  for i in range(len(source)):
    example = source[i]
    folds[example["prompt"]].add(int(example["fold"]))
    languages[example["prompt"]].add(int(example["label"]))
    assert 0 < len(example["audio"]) <= 4 * 16000 and int(example["sample_rate"]) == 16000
  assert all(len(f) == 1 for f in folds.values())  # a prompt is in one fold in every language
  assert all(len(l) == 5 for l in languages.values())
  assert {f for fs in folds.values() for f in fs} == set(range(1, 6))


def _peak_hz(clip, rate):
  window = clip[: rate // 2] * np.hanning(rate // 2)
  spectrum = np.abs(np.fft.rfft(window, 1 << 16))
  return np.argmax(spectrum) * rate / (1 << 16)


@FLUIDSYNTH
@SOUNDFONTS["FluidR3_GM"]
@SOUNDFONTS["TimGM6mb"]
@pytest.mark.parametrize("soundfont", ["FluidR3_GM", "TimGM6mb"])
def test_rendered_notes_have_the_requested_pitch(soundfont):
  # Ocarina and square lead: the fundamental is the strongest partial in both soundfonts at
  # every pitch (a flute's octave or a piano's upper partials can beat it).
  notes = [(79, 48), (79, 69), (80, 60), (80, 79)]
  clips = sea_render.render([sea_render.note_slot(p, k, 100, 700) for p, k in notes], soundfont)
  assert clips.shape == (4, 16000)
  for (_, pitch), clip in zip(notes, clips):
    expected = 440.0 * 2.0 ** ((pitch - 69) / 12)
    assert _peak_hz(clip, 16000) == pytest.approx(expected, rel=0.01)  # < 1/5 semitone
    assert np.abs(clip[-200:]).max() < 1e-3 * np.abs(clip).max() + 1e-6  # silenced at slot end


@FLUIDSYNTH
@SOUNDFONTS["TimGM6mb"]
def test_drum_pool_loudness_is_the_a_weighted_leq_of_the_clip(data_dir):
  source = sea_render.drum_pool("train", data_dir=data_dir, config="tiny")
  assert (
      len(source) == 64
      and len(sea_audio.drum_pool("validation", data_dir=data_dir, config="tiny")) == 8
  )
  levels, gains = [], []
  for i in range(0, len(source), 8):
    example = source[i]
    assert example["audio"].shape == (16000,) and np.abs(example["audio"]).max() <= 1.0
    expected = float(loudness.a_weighted_leq(example["audio"], int(example["sample_rate"])))
    assert float(example["loudness"]) == pytest.approx(expected, abs=1e-3)
    assert -40.0 - 1e-4 <= float(example["gain_db"]) <= 0.0
    levels.append(float(example["loudness"]))
    gains.append(float(example["gain_db"]))
  assert np.corrcoef(levels, gains)[0, 1] > 0.5  # the random gain drives the level


@FLUIDSYNTH
@SOUNDFONTS["FluidR3_GM"]
@ESPEAK
def test_general_domain_labels_and_levels(data_dir):
  source = sea_render.general("train+validation+test", data_dir=data_dir, config="tiny")
  assert source.label_names == sea_render.GENERAL_CLASSES and len(source) == 180
  seen = collections.Counter()
  for i in range(len(source)):
    example = source[i]
    name = sea_render.GENERAL_CLASSES[int(example["label"])]
    seen[name] += 1
    peak_db = 20 * np.log10(np.abs(example["audio"]).max())
    assert sea_render.PEAK_DB[0] - 1e-3 <= peak_db <= sea_render.PEAK_DB[1] + 1e-3
    if name == "speech":
      assert example["source"].startswith("espeak-ng:")
    elif name == "drums":
      assert int(example["program"]) - 128 in sea_render.DRUM_KITS
    else:
      assert sea_render.GM_FAMILIES[int(example["program"]) // 8] == name
  assert set(seen.values()) == {10}
