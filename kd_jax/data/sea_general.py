"""G, the general domain of SEA's `cpu` table (the teacher's data), and the two-crop view of it.

G stands in for the teacher's broad training data (AudioSet for L3) and holds NO real recorded
drums: the target domain T of the table is real recorded drums (`kd_jax.data.sea_kits`), and a
student distilled on G should have heard none. Every clip is two seconds, mono 16 kHz, scaled to a
random peak of −30…−6 dBFS (so loudness tells nothing), in 19 groups of `size` clips:

| group | source | what |
|---|---|---|
| 16 GM families | `fluid-soundfont-gm` via fluidsynth, SYNTHETIC | a phrase of 1–4 notes of one program (the family's 8 programs in turn), random pitches in range, velocity 40–127 |
| drums | FluidR3's eight GS kits, SYNTHETIC | a random two-second groove (`sea_render.random_groove`) |
| speech | `espeak-ng`, SYNTHETIC | random numbers in 16 languages × 4 voice variants, a random two-second crop |
| effects | `ufoai-sound`, `wordwarvi-sound`: recorded game sound effects | a random two-second crop of one file (files in turn); music tracks and anything named like a drum are left out (`EXCLUDED_EFFECTS`) |

The group is stored as "label" (and "source" names the file, soundfont or voice) for inspection
only: the teacher learns without labels (`kd_jax.methods.crop_contrastive`), from two one-second
crops of a clip (`two_crops`, a batch transform) as L3 learns from a video's audio and one of its
frames. Splits 80/10/10 per group.
"""

from __future__ import annotations

import dataclasses
import re
import zipfile

import numpy as np
import tensorflow_datasets as tfds

from kd_jax.data import audio as audio_lib
from kd_jax.data import sea_audio
from kd_jax.data import sea_render
from kd_jax.data.builders import splitting

RATE = sea_audio.RATE
CLIP_SECONDS = 2
CLIP_MS = 1000 * CLIP_SECONDS
GROUPS = sea_render.GM_FAMILIES + ("drums", "speech", "effects")
# espeak-ng voices of G's synthetic speech: many languages, so "speech" is no one language.
SPEECH_VOICES = ("en-us", "en-gb", "de", "fr-fr", "es", "it", "pt", "nl")
SPEECH_VOICES += ("sv", "pl", "ru", "cs", "el", "fi", "tr", "hi")
EFFECT_PACKAGES = ("ufoai-sound", "wordwarvi-sound")
# Music tracks (which may hold recorded drums) and drum-named files are not effects for G.
EXCLUDED_EFFECTS = re.compile(
    r"music|mix|disco|jingle|song|cornbread|highscore|xmas|santa|hohoho|drum|timpani|percussion"
    r"|cymbal|snare|kick|tom\b|hihat|clap",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True)
class Effect:
  """A recorded effect: a file, or a member of a game's pk3 (zip) archive."""

  path: str
  member: str = ""

  @property
  def name(self) -> str:
    return f"{self.path}:{self.member}" if self.member else self.path

  def decode(self) -> np.ndarray:
    if not self.member:
      return audio_lib.decode_audio(self.path, sample_rate=RATE)[0]
    with zipfile.ZipFile(self.path) as archive:
      return audio_lib.decode_audio(archive.read(self.member), sample_rate=RATE)[0]


def game_effects() -> list[Effect]:
  """The recorded effects of EFFECT_PACKAGES (ufoai's sound pk3, wordwarvi's oggs), sorted,
  without EXCLUDED_EFFECTS."""
  effects = []
  for archive in sea_audio.package_paths(
      "ufoai-sound", "snd.pk3", "/usr/share/games/ufoai/base/*snd.pk3", "game sound effects"
  ):
    with zipfile.ZipFile(archive) as z:
      members = [m for m in z.namelist() if m.startswith("sound/") and m.endswith((".ogg", ".wav"))]
    effects += [Effect(str(archive), m) for m in sorted(members)]
  effects += [
      Effect(str(p))
      for p in sea_audio.package_paths(
          "wordwarvi-sound", ".ogg", "/usr/share/wordwarvi/sounds/*.ogg", "game sound effects"
      )
  ]
  return [e for e in effects if not EXCLUDED_EFFECTS.search(e.name.rsplit("/", 1)[-1])]


def active_crop(clip: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
  """A random crop of `length` samples among those holding at least 10 % of the energy of the
  clip's loudest crop (hop 0.1 s), so that a long recording's silent stretches are not drawn;
  short clips are zero-padded."""
  if len(clip) <= length:
    return audio_lib.crop_or_pad(clip, length)
  hop = RATE // 10
  starts = np.arange(0, len(clip) - length + 1, hop)
  energy = np.concatenate([[0.0], np.cumsum(np.square(clip, dtype=np.float64))])
  windows = energy[starts + length] - energy[starts]
  start = int(rng.choice(starts[windows >= 0.1 * windows.max()]))
  return clip[start : start + length]


def phrase_slot(rng: np.random.Generator, program_number: int) -> sea_render.Slot:
  """1–4 notes of one program over CLIP_MS (onsets in order, each 0.25–0.9 s long)."""
  low, high = sea_render.pitch_range(program_number)
  count = int(rng.integers(1, 5))
  onsets = np.sort(rng.choice(np.arange(0, CLIP_MS - 300, 50), size=count, replace=False))
  hits = tuple(
      (
          int(t),
          int(rng.integers(low, high + 1)),
          int(rng.integers(40, 128)),
          int(rng.integers(250, 900)),
      )
      for t in onsets
  )
  return sea_render.Slot(0, int(program_number), hits)


class SeaGeneral(sea_audio.SeaBuilder):
  """G (no real recorded drums): GM phrases, GM grooves, espeak-ng speech, game effects; 2 s."""

  name = "kd_sea_general"
  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"2.0.0": "Two-second clips, game effects, no real drums (issue 23)."}
  BUILDER_CONFIGS = sea_audio.SeaBuilder.configs(200, 8)
  DESCRIPTION = "SEA cpu general domain G: GM phrases, GM drum grooves, speech, game effects; 2 s."

  def check_packages(self):
    sea_render.soundfont("FluidR3_GM")
    sea_audio.program("fluidsynth", "fluidsynth")
    sea_audio.program("espeak-ng", "espeak-ng")
    game_effects()

  def _features(self):
    return {
        **sea_audio.audio_features(CLIP_SECONDS * RATE),
        "label": tfds.features.ClassLabel(names=GROUPS),
        "source": tfds.features.Text(),
    }

  def plan(self) -> list[dict]:
    """One spec per clip: "slot" (MIDI), "speech" (espeak-ng) or "effect". Seeded, so fixed."""
    rng, size, specs = np.random.default_rng(1), self.builder_config.size, []
    for family in range(len(sea_render.GM_FAMILIES)):
      for i in range(size):
        program_number = 8 * family + i % 8
        specs.append(dict(label=family, slot=phrase_slot(rng, program_number)))
        specs[-1]["source"] = f"FluidR3_GM:program{program_number}"
    for i in range(size):
      kit = sea_render.DRUM_KITS[i % len(sea_render.DRUM_KITS)]
      slot = sea_render.random_groove(rng, kit, CLIP_MS)
      specs.append(dict(label=GROUPS.index("drums"), slot=slot, source=f"FluidR3_GM:kit{kit}"))
    for i in range(size):
      voice = SPEECH_VOICES[i % len(SPEECH_VOICES)] + ("", "+f2", "+m3", "+f4")[i // 16 % 4]
      text = " ".join(str(n) for n in rng.integers(0, 10000, size=int(rng.integers(4, 8))))
      speech = dict(text=text, voice=voice, speed=int(rng.integers(130, 220)))
      speech["pitch"] = int(rng.integers(25, 75))
      specs.append(dict(label=GROUPS.index("speech"), speech=speech, source=f"espeak-ng:{voice}"))
    effects = game_effects()
    for i in range(size):
      effect = effects[i % len(effects)]
      specs.append(dict(label=GROUPS.index("effects"), effect=effect, source=effect.name))
    splits = splitting.stratified_split([s["label"] for s in specs], seed=0)
    peaks = rng.uniform(*sea_render.PEAK_DB, size=len(specs))
    for index, (spec, split, peak) in enumerate(zip(specs, splits, peaks)):
      spec.update(key=f"{index:06d}", split=str(split), peak_db=float(peak), seed=index)
    return specs

  def _split_generators(self, dl_manager):
    del dl_manager
    specs = self.plan()
    return {
        s: self._generate_examples([p for p in specs if p["split"] == s])
        for s in ("train", "validation", "test")
    }

  def _generate_examples(self, specs):
    length = CLIP_SECONDS * RATE
    slots = [s for s in specs if "slot" in s]
    for first in range(0, len(slots), sea_render.SLOTS_PER_RENDER):
      chunk = slots[first : first + sea_render.SLOTS_PER_RENDER]
      clips = sea_render.render([s["slot"] for s in chunk], "FluidR3_GM", slot_ms=CLIP_MS)
      for spec, clip in zip(chunk, clips):
        yield spec["key"], self._example(spec, clip)
    for spec in (s for s in specs if "speech" in s):
      speech = spec["speech"]
      clip = sea_render.speak(
          speech["text"], speech["voice"], speed=speech["speed"], pitch=speech["pitch"]
      )
      clip = audio_lib.crop_or_pad(clip, length, rng=np.random.default_rng([2, spec["seed"]]))
      yield spec["key"], self._example(spec, clip)
    for spec in (s for s in specs if "effect" in s):
      clip = active_crop(spec["effect"].decode(), length, np.random.default_rng([3, spec["seed"]]))
      yield spec["key"], self._example(spec, clip)

  def _example(self, spec, clip):
    return {
        "audio": sea_render.peak_normalise(
            clip, spec["peak_db"], f"kd_sea_general {spec['source']}"
        ),
        "sample_rate": RATE,
        "label": spec["label"],
        "source": spec["source"],
    }


def general(split, *, data_dir=None, manual_dir=None, config="full"):
  """G: GM phrases (16 families), GM grooves, espeak-ng speech, game effects; 2 s; no real drums."""
  del manual_dir  # from Debian packages
  return sea_audio.open_source(SeaGeneral, split, data_dir, config)


@dataclasses.dataclass(frozen=True)
class TwoCrops:
  """Batch transform: B clips → 2B crops of `seconds` at independent random offsets, rows
  [first crops; second crops], with "pair" = the clip's row (0..B−1, twice) for a contrastive
  loss (`kd_jax.methods.crop_contrastive`). Every other entry is repeated alongside."""

  seconds: float = 1.0
  key: str = "audio"

  def __call__(self, batch, rng: np.random.Generator):
    audio = np.asarray(batch[self.key])
    rate = int(np.asarray(batch["sample_rate"]).reshape(-1)[0])
    length = int(round(self.seconds * rate))
    if audio.ndim != 2 or audio.shape[1] < length:
      raise ValueError(
          f"TwoCrops: needs clips [batch, >= {length} samples] in {self.key!r}, got "
          f"{audio.shape}."
      )
    size = audio.shape[0]
    starts = rng.integers(0, audio.shape[1] - length + 1, size=(2, size))
    rows = np.arange(size)
    crops = [audio[rows[:, None], s[:, None] + np.arange(length)] for s in starts]
    out = {k: np.concatenate([np.asarray(v)] * 2) for k, v in batch.items() if k != self.key}
    out[self.key] = np.concatenate(crops).astype(audio.dtype)
    out["pair"] = np.concatenate([rows, rows]).astype(np.int32)
    return out


two_crops = TwoCrops()  # the config's batch transform ("kd_jax.data.sea_general:two_crops")


@dataclasses.dataclass(frozen=True)
class CentreCrop:
  """Transform: the centre `seconds` of each clip (deterministic, so a teacher cache holds)."""

  seconds: float = 1.0
  key: str = "audio"
  deterministic = True  # read by the teacher cache (kd_jax.train.teacher_cache)

  def __call__(self, example, rng):
    del rng
    length = int(round(self.seconds * int(example["sample_rate"])))
    return {**example, self.key: audio_lib.crop_or_pad(example[self.key], length)}


centre_second = CentreCrop()  # "kd_jax.data.sea_general:centre_second": SEA on G's clips
