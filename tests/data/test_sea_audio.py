"""SEA's `cpu` data (kd_jax.data.sea_audio, sea_kits, sea_general, sea_render) on the real Debian
package data.

The sources are built in their "tiny" configs (a handful of clips each) into the session's
temporary data_dir. A test that reads a package is marked with it: under CI=true a missing package
fails the test, locally it skips naming the package (tests/system_data.py).
"""

from __future__ import annotations

import collections
import hashlib
import pathlib

import numpy as np
import pytest

from kd_jax.data import loudness
from kd_jax.data import sea_audio
from kd_jax.data import sea_general
from kd_jax.data import sea_kits
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
EFFECTS = [
    system_data.needs(
        "ufoai-sound", _has("ufoai-sound", "snd.pk3", "/usr/share/games/ufoai/base/*snd.pk3")
    ),
    system_data.needs(
        "wordwarvi-sound",
        _has("wordwarvi-sound", "/clang.ogg", "/usr/share/wordwarvi/sounds/clang.ogg"),
    ),
]


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


def _shot(kit, name, label="kick"):
  return sea_audio.OneShot(pathlib.Path(f"/kits/{kit}/{name}"), kit, name, label)


def test_kit_families_join_shared_file_names_and_a_makers_kits():
  shots = [
      _shot("hydrogen/Millo-Drums_v.1", "a.wav"),
      _shot("hydrogen/Millo_MultiLayered2", "b.wav"),
      _shot("hydrogen/Gimme A Hand 1.0", "Cowbell-Soft.wav"),
      _shot("hydrogen/The Black Pearl 1.0", "Cowbell-Soft.wav"),
      _shot("hydrogen/Audiophob", "k.wav"),
      _shot("sonic-pi", "bd_808"),
  ]
  family = sea_kits.kit_families(shots)
  assert family["hydrogen/Millo-Drums_v.1"] == family["hydrogen/Millo_MultiLayered2"]
  assert family["hydrogen/Gimme A Hand 1.0"] == family["hydrogen/The Black Pearl 1.0"]
  assert len(set(family.values())) == 4


def test_soundscape_layers_hits_of_the_kit_at_peak_one():
  rng = np.random.default_rng(0)
  click = np.zeros(800, np.float32)
  click[0] = 1.0
  samples = {"kick": [click], "hihat": [0.5 * click]}
  clip = sea_kits.render_soundscape(rng, samples, length=16000)
  assert clip.shape == (16000,) and np.abs(clip).max() == pytest.approx(1.0)
  assert np.count_nonzero(clip) >= 2  # several hits on the grid
  only_silence = sea_kits.render_soundscape(np.random.default_rng(1), {"tom": [click]}, 16000)
  assert np.count_nonzero(only_silence) >= 1  # never an empty soundscape


def _digest(path) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


@HYDROGEN
@SONIC_PI
def test_pool_kits_and_task_kits_share_no_kit_and_no_file(data_dir):
  split = sea_kits.kit_split()
  task_kits, pool_kits = {s.kit for s in split.task}, {s.kit for s in split.pool}
  assert task_kits and pool_kits and not task_kits & pool_kits
  everything = sea_audio.drum_one_shots()
  assert len(split.task) + len(split.pool) == len(everything)  # every labelled shot, once
  task_files, pool_files = {s.path for s in split.task}, {s.path for s in split.pool}
  assert not task_files & pool_files
  assert not {s.path.name for s in split.task} & {s.path.name for s in split.pool}
  assert not {_digest(p) for p in task_files} & {_digest(p) for p in pool_files}
  family = sea_kits.kit_families(everything)
  assert not {family[k] for k in task_kits} & {family[k] for k in pool_kits}
  folds_of_kit = collections.defaultdict(set)
  for shot in split.task:
    folds_of_kit[shot.kit].add(shot.fold)
  assert all(len(f) == 1 for f in folds_of_kit.values())
  assert {s.fold for s in split.task} == set(range(1, 6))
  for labels in ({s.label for s in split.task}, {s.label for s in split.pool}):
    assert labels == set(sea_audio.DRUM_CLASSES)

  source = sea_kits.drums(ALL_FOLDS, data_dir=data_dir, config="tiny")
  assert source.label_names == sea_audio.DRUM_CLASSES and 5 <= len(source) <= 30
  by_path = {str(s.path): s for s in split.task}
  for i in range(len(source)):
    example = source[i]
    shot = by_path[example["filename"]]  # a task kit's file, never a pool kit's
    assert int(example["fold"]) == shot.fold and example["kit"] == shot.kit
    assert sea_audio.DRUM_CLASSES[int(example["label"])] == shot.label
    assert example["audio"].shape == (16000,) and int(example["sample_rate"]) == 16000
    assert np.abs(example["audio"][:400]).max() > 0.0  # starts at the onset
    expected = float(loudness.a_weighted_leq(example["audio"], 16000))
    assert float(example["loudness"]) == pytest.approx(expected, abs=1e-3)

  pool = sea_kits.kit_pool("train+validation+test", data_dir=data_dir, config="tiny")
  assert len(pool) == 80 and len(sea_kits.kit_pool("train", data_dir=data_dir, config="tiny")) == 64
  levels, gains = [], []
  for i in range(0, len(pool), 4):
    example = pool[i]
    assert example["kit"] in pool_kits
    assert example["audio"].shape == (16000,) and np.abs(example["audio"]).max() <= 1.0
    expected = float(loudness.a_weighted_leq(example["audio"], 16000))
    assert float(example["loudness"]) == pytest.approx(expected, abs=1e-3)
    peak_db = 20 * np.log10(np.abs(example["audio"]).max())
    assert float(example["gain_db"]) == pytest.approx(peak_db, abs=1e-3)
    assert -40.0 <= float(example["gain_db"]) <= 0.0
    levels.append(float(example["loudness"]))
    gains.append(float(example["gain_db"]))
  assert np.corrcoef(levels, gains)[0, 1] > 0.5  # the random gain drives the level


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


def test_active_crop_skips_silence_and_pads_short_clips():
  clip = np.zeros(10 * 16000, np.float32)
  clip[7 * 16000 : 8 * 16000] = 1.0
  for seed in range(5):
    crop = sea_general.active_crop(clip, 32000, np.random.default_rng(seed))
    assert crop.shape == (32000,) and crop.sum() >= 0.1 * 16000
  short = sea_general.active_crop(np.ones(100, np.float32), 32000, np.random.default_rng(0))
  assert short.shape == (32000,) and short[:100].all() and not short[100:].any()


@FLUIDSYNTH
@SOUNDFONTS["FluidR3_GM"]
@ESPEAK
@EFFECTS[0]
@EFFECTS[1]
@HYDROGEN
@SONIC_PI
def test_general_domain_holds_no_real_recorded_drum_file(data_dir):
  drum_files = {str(s.path) for s in sea_audio.drum_one_shots()}
  drum_digests = {_digest(p) for p in drum_files}
  effects = sea_general.game_effects()
  assert len(effects) > 300
  for effect in effects:
    assert effect.path not in drum_files
    assert not sea_general.EXCLUDED_EFFECTS.search(effect.name.rsplit("/", 1)[-1])
    if not effect.member:
      assert _digest(effect.path) not in drum_digests
  assert not any("disco" in e.name or "timpani" in e.name for e in effects)

  source = sea_general.general("train+validation+test", data_dir=data_dir, config="tiny")
  assert source.label_names == sea_general.GROUPS and len(source) == 8 * len(sea_general.GROUPS)
  seen = collections.Counter()
  effect_names = {e.name for e in effects}
  for i in range(len(source)):
    example = source[i]
    group = sea_general.GROUPS[int(example["label"])]
    seen[group] += 1
    origin = example["source"]
    assert origin not in drum_files
    if group == "speech":
      assert origin.startswith("espeak-ng:")
    elif group == "effects":
      assert origin in effect_names
    else:
      assert origin.startswith("FluidR3_GM:")  # rendered: the soundfont's samples, not a kit
    assert example["audio"].shape == (32000,)
    peak_db = 20 * np.log10(np.abs(example["audio"]).max())
    assert sea_render.PEAK_DB[0] - 1e-3 <= peak_db <= sea_render.PEAK_DB[1] + 1e-3
  assert set(seen.values()) == {8}


@FLUIDSYNTH
@SOUNDFONTS["TimGM6mb"]
def test_gm_family_task_folds_by_program_with_every_family_in_every_fold(data_dir):
  source = sea_render.gm_family(ALL_FOLDS, data_dir=data_dir, config="tiny")
  assert source.label_names == sea_render.GM_FAMILIES and len(source) == 128
  folds_of_program, families_of_fold = collections.defaultdict(set), collections.defaultdict(set)
  for i in range(len(source)):
    example = source[i]
    program = int(example["program"])
    assert int(example["label"]) == program // 8
    folds_of_program[program].add(int(example["fold"]))
    families_of_fold[int(example["fold"])].add(int(example["label"]))
    assert example["audio"].shape == (16000,) and np.abs(example["audio"]).max() > 1e-3
  assert all(len(f) == 1 for f in folds_of_program.values())  # scored on unheard programs
  assert set(families_of_fold) == set(range(1, 6))
  assert all(f == set(range(16)) for f in families_of_fold.values())
