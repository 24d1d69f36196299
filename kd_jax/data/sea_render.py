"""The synthetic sources of SEA's `cpu` table: G (`general`) and T's pool (`drum_pool`).

Everything here is SYNTHETIC (shared SEA_CPU.md): General-MIDI notes and drum grooves played by
`fluidsynth` from the soundfonts of `fluid-soundfont-gm` (FluidR3_GM, MIT) and
`timgm6mb-soundfont` (TimGM6mb, GPL-2), and speech from `espeak-ng`. The soundfonts hold recorded
instrument samples, but every performance (pitch, timing, velocity) is generated.

- `general` (G, to train the L3-shaped teacher): 18 classes × 320 one-second clips: a note of
  each of the 128 melodic programs in turn (label = GM family = program // 8; random pitch in the
  family's range, velocity 40-127, 0.25-0.9 s long), random grooves from FluidR3's eight GS kits
  ("drums"), and espeak-ng saying random numbers in 16 languages and 4 voice variants ("speech",
  a random 1 s crop). Every clip is scaled to a random peak of −30…−6 dBFS. Splits 80/10/10 per
  class.
- `drum_pool` (T's distillation pool): random grooves (`random_groove`) from TimGM6mb's eight
  kits, a sample set independent of G's FluidR3 drums and of the downstream one-shots, each scaled
  by a random gain of −40…0 dB (the level spread SEA's SPL-informed sampling ranks); "loudness"
  is `kd_jax.data.loudness.a_weighted_leq` of the stored clip. 750 per kit, 80/10/10 per kit.

Rendering is batched: one Standard MIDI File holds hundreds of one-second slots back to back,
each ending with All Sound Off, and one `fluidsynth -F` call renders it much faster than real
time; slot k is samples [k·rate, (k+1)·rate) of the output. Reverb and chorus are off, so no
tail crosses into the next slot and a note's spectrum is the sample's own.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import struct
import subprocess
import tempfile

import numpy as np
import tensorflow_datasets as tfds

from kd_jax.data import audio as audio_lib
from kd_jax.data import sea_audio
from kd_jax.data.builders import splitting

SAMPLE_RATE = sea_audio.RATE
SLOT_MS = 1000
# fluidsynth's master gain; its default 0.2 leaves single notes near -30 dBFS. Output is float,
# so a dense groove above full scale is not clipped here (callers rescale).
FLUIDSYNTH_GAIN = 0.5
SLOTS_PER_RENDER = 512  # ~65 MB of float stereo per temporary file at 16 kHz

GM_FAMILIES = (
    "piano",
    "chromatic_percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth_lead",
    "synth_pad",
    "synth_effects",
    "ethnic",
    "percussive",
    "sound_effects",
)
# MIDI pitch ranges each family is commonly played in; outside them several FluidR3 presets
# fall silent or alias (e.g. basses above C4, piccolo below C4).
FAMILY_PITCHES = {
    "piano": (36, 96),
    "chromatic_percussion": (60, 96),
    "organ": (36, 84),
    "guitar": (40, 84),
    "bass": (28, 55),
    "strings": (40, 84),
    "ensemble": (40, 84),
    "brass": (40, 80),
    "reed": (45, 84),
    "pipe": (60, 96),
    "synth_lead": (48, 84),
    "synth_pad": (40, 80),
    "synth_effects": (40, 84),
    "ethnic": (48, 84),
    "percussive": (48, 84),
    "sound_effects": (48, 72),
}
# Programs whose FluidR3 samples stop short of their family's range (found by rendering every
# pitch: above these they are silent).
PROGRAM_PITCHES = {
    11: (60, 78),
    43: (28, 57),
    58: (28, 72),
    67: (36, 72),
    82: (48, 73),
    101: (40, 79),
}
# Every G clip is scaled to a random peak level, so that loudness tells no class (espeak-ng
# speaks near full scale, a soundfont note at -20 dBFS).
PEAK_DB = (-30.0, -6.0)
# GS drum-kit programs (bank 128) present in both soundfonts: Standard, Room, Power, Electronic,
# TR-808, Jazz, Brush, Orchestra.
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40, 48)
DRUM_CHANNEL = 9  # GM percussion channel: fluidsynth plays it from bank 128
# GM percussion key map grouped as the downstream classes; (P(role plays in a slot), P(hit per
# 16th note | it plays)) shape a groove: kick and hi-hat often, toms and cymbals sometimes.
DRUM_ROLES = {
    "kick": ((35, 36), 0.8, 0.35),
    "snare": ((37, 38, 39, 40), 0.7, 0.25),
    "hihat": ((42, 44, 46), 0.7, 0.6),
    "tom": ((41, 43, 45, 47, 48, 50), 0.3, 0.2),
    "cymbal": ((49, 51, 52, 53, 55, 57, 59), 0.35, 0.1),
    "percussion": (tuple(range(60, 82)) + (54, 56, 58), 0.4, 0.3),
}

GENERAL_CLASSES = GM_FAMILIES + ("drums", "speech")
# espeak-ng voices of G's synthetic speech: many languages, so "speech" is no one language.
SPEECH_VOICES = ("en-us", "en-gb", "de", "fr-fr", "es", "it", "pt", "nl")
SPEECH_VOICES += ("sv", "pl", "ru", "cs", "el", "fi", "tr", "hi")


SOUNDFONTS = {
    "FluidR3_GM": "fluid-soundfont-gm",
    "TimGM6mb": "timgm6mb-soundfont",
}


def soundfont(name: str) -> pathlib.Path:
  """The installed .sf2 file of `name` ("FluidR3_GM" or "TimGM6mb")."""
  if name not in SOUNDFONTS:
    raise ValueError(f"Unknown soundfont {name!r}; known: {sorted(SOUNDFONTS)}.")
  package = SOUNDFONTS[name]
  return sea_audio.package_paths(
      package, f"/{name}.sf2", f"/usr/share/sounds/sf2/{name}.sf2", f"the {name} soundfont"
  )[0]


@dataclasses.dataclass(frozen=True)
class Slot:
  """One second of MIDI: a program on a channel and its hits (onset ms, key, velocity, ms)."""

  channel: int
  program: int
  hits: tuple[tuple[int, int, int, int], ...]


def note_slot(program_number: int, pitch: int, velocity: int, duration_ms: int) -> Slot:
  """A single melodic note from the slot's start (channel 0, bank 0)."""
  return Slot(0, int(program_number), ((0, int(pitch), int(velocity), int(duration_ms)),))


def random_groove(rng: np.random.Generator, kit: int) -> Slot:
  """One second of a random drum pattern on a 16th-note grid at 70-180 BPM (kit `kit`)."""
  step = 60000.0 / rng.uniform(70.0, 180.0) / 4.0
  start = rng.uniform(0.0, step)
  hits = []
  for keys, p_plays, p_hit in DRUM_ROLES.values():
    if rng.random() >= p_plays:
      continue
    # A drummer uses one or two sounds of a role in a bar, not the whole key map.
    chosen = rng.choice(keys, size=int(rng.integers(1, 3)))
    for onset in np.arange(start, SLOT_MS - 50, step):
      if rng.random() < p_hit:
        hits.append((int(onset), int(rng.choice(chosen)), int(rng.integers(30, 128)), 100))
  if not hits:  # every pool clip holds at least one drum hit
    hits.append((int(start), 36, int(rng.integers(30, 128)), 100))
  return Slot(DRUM_CHANNEL, int(kit), tuple(sorted(hits)))


def _varlen(value: int) -> bytes:
  """MIDI variable-length quantity: 7 bits per byte, high bit set on all but the last."""
  groups = [value & 0x7F]
  value >>= 7
  while value:
    groups.append((value & 0x7F) | 0x80)
    value >>= 7
  return bytes(reversed(groups))


def midi_file(slots: list[Slot]) -> bytes:
  """A format-0 Standard MIDI File playing `slots` back to back, one per SLOT_MS.

  1000 ticks per quarter at 1 000 000 µs per quarter makes a tick one millisecond. Each slot
  starts with its program change and ends 1 ms early with All Sound Off (CC 120), which fluidsynth
  applies at once, so nothing sounds into the next slot.
  """
  events = []  # (tick, order, bytes); `order` puts silencing before new sound at one tick
  for k, slot in enumerate(slots):
    base, ch = k * SLOT_MS, slot.channel
    events.append((base, 1, bytes([0xC0 | ch, slot.program & 0x7F])))
    for onset, key, velocity, duration in slot.hits:
      off = min(onset + max(duration, 1), SLOT_MS - 2)
      events.append((base + onset, 3, bytes([0x90 | ch, key & 0x7F, max(1, velocity) & 0x7F])))
      events.append((base + off, 2, bytes([0x80 | ch, key & 0x7F, 0])))
    events.append((base + SLOT_MS - 1, 0, bytes([0xB0 | ch, 120, 0])))
  events.sort(key=lambda e: (e[0], e[1]))
  track, last = bytearray(_varlen(0) + b"\xff\x51\x03" + (1_000_000).to_bytes(3, "big")), 0
  for tick, _, message in events:
    track += _varlen(tick - last) + message
    last = tick
  track += _varlen(0) + b"\xff\x2f\x00"
  header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, 1000)
  return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def render(slots: list[Slot], soundfont_name: str, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """Renders `slots` with fluidsynth from soundfont `soundfont_name` → float32 [len(slots), rate].

  Mono is the mean of fluidsynth's stereo output (drum kits are panned).
  """
  binary = sea_audio.program("fluidsynth", "fluidsynth")
  sf2 = soundfont(soundfont_name)
  clips = []
  with tempfile.TemporaryDirectory(prefix="kd_sea_render_") as work:
    for first in range(0, len(slots), SLOTS_PER_RENDER):
      chunk = slots[first : first + SLOTS_PER_RENDER]
      mid, raw = os.path.join(work, "slots.mid"), os.path.join(work, "slots.raw")
      with open(mid, "wb") as f:
        f.write(midi_file(chunk))
      command = [binary, "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", str(FLUIDSYNTH_GAIN)]
      command += ["-r", str(sample_rate), "-T", "raw", "-O", "float", "-E", "little"]
      command += ["-F", raw, str(sf2), mid]
      done = subprocess.run(command, capture_output=True, text=True, check=False)
      if done.returncode != 0 or not os.path.exists(raw):
        raise RuntimeError(
            f"fluidsynth failed ({done.returncode}) on {sf2}: {done.stderr.strip()[-500:]}"
        )
      stereo = np.fromfile(raw, dtype="<f4")
      mono = stereo[: len(stereo) // 2 * 2].reshape(-1, 2).mean(axis=1)
      need = len(chunk) * sample_rate
      mono = np.pad(mono[:need], (0, max(0, need - len(mono))))
      clips.append(mono.reshape(len(chunk), sample_rate).astype(np.float32))
  if not clips:
    return np.zeros((0, sample_rate), np.float32)
  return np.concatenate(clips)


def speak(
    text: str, voice: str, *, speed: int = 160, pitch: int = 50, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
  """SYNTHETIC speech: `text` spoken by espeak-ng `voice` (e.g. "fr-fr+f2"), float32 [T]."""
  binary = sea_audio.program("espeak-ng", "espeak-ng")
  with tempfile.TemporaryDirectory(prefix="kd_sea_speak_") as work:
    path = os.path.join(work, "speech.wav")
    command = [binary, "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "-w", path, text]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not os.path.exists(path):
      raise RuntimeError(f"espeak-ng failed ({done.returncode}) for voice {voice!r}: {done.stderr}")
    clip, _ = audio_lib.decode_audio(path, sample_rate=sample_rate)
  return clip


class SeaGeneral(sea_audio.SeaBuilder):
  """G (SYNTHETIC): GM instrument notes, GM drum grooves (FluidR3_GM) and espeak-ng speech."""

  name = "kd_sea_general"
  BUILDER_CONFIGS = sea_audio.SeaBuilder.configs(320, 10)
  DESCRIPTION = "SEA cpu general domain G: synthetic GM notes by family, drum grooves, speech."

  def check_packages(self):
    soundfont("FluidR3_GM")
    sea_audio.program("fluidsynth", "fluidsynth")
    sea_audio.program("espeak-ng", "espeak-ng")

  def _features(self):
    return {
        **sea_audio.audio_features(),
        "label": tfds.features.ClassLabel(names=GENERAL_CLASSES),
        "program": tfds.features.Tensor(shape=(), dtype=np.int32),
        "pitch": tfds.features.Tensor(shape=(), dtype=np.int32),
        "velocity": tfds.features.Tensor(shape=(), dtype=np.int32),
        "source": tfds.features.Text(),
    }

  def plan(self) -> list[dict]:
    """One spec per clip; "slot" (MIDI) or "speech" (espeak-ng arguments). Seeded, so fixed."""
    rng, per_class, specs = np.random.default_rng(1), self.builder_config.size, []
    for family, name in enumerate(GM_FAMILIES):
      for i in range(per_class):
        program = 8 * family + i % 8
        low, high = PROGRAM_PITCHES.get(program, FAMILY_PITCHES[name])
        pitch = int(rng.integers(low, high + 1))
        velocity, ms = int(rng.integers(40, 128)), int(rng.integers(250, 900))
        slot = note_slot(program, pitch, velocity, ms)
        specs.append({"label": family, "slot": slot, "program": program, "pitch": pitch})
        specs[-1].update(velocity=velocity, source="FluidR3_GM")
    for i in range(per_class):
      kit = DRUM_KITS[i % len(DRUM_KITS)]
      slot = random_groove(rng, kit)
      specs.append({"label": len(GM_FAMILIES), "slot": slot, "program": 128 + kit})
    for i in range(per_class):
      voice = SPEECH_VOICES[i % len(SPEECH_VOICES)] + ("", "+f2", "+m3", "+f4")[i // 16 % 4]
      text = " ".join(str(n) for n in rng.integers(0, 10000, size=int(rng.integers(2, 5))))
      speech = {"text": text, "voice": voice, "speed": int(rng.integers(130, 220))}
      speech["pitch"] = int(rng.integers(25, 75))
      specs.append({"label": len(GENERAL_CLASSES) - 1, "speech": speech, "seed": i})
    splits = splitting.stratified_split([s["label"] for s in specs], seed=0)
    peaks = rng.uniform(*PEAK_DB, size=len(specs))
    for index, (spec, split, peak) in enumerate(zip(specs, splits, peaks)):
      spec.update(key=f"{index:06d}", split=str(split), peak_db=float(peak))
    return specs

  def _split_generators(self, dl_manager):
    del dl_manager
    specs = self.plan()
    return {
        s: self._generate_examples([p for p in specs if p["split"] == s])
        for s in ("train", "validation", "test")
    }

  def _generate_examples(self, specs):
    slots = [s for s in specs if "slot" in s]
    for first in range(0, len(slots), SLOTS_PER_RENDER):
      chunk = slots[first : first + SLOTS_PER_RENDER]
      clips = render([s["slot"] for s in chunk], "FluidR3_GM")
      for spec, clip in zip(chunk, clips):
        yield spec["key"], self._example(spec, clip)
    for spec in (s for s in specs if "speech" in s):
      speech = spec["speech"]
      clip = speak(speech["text"], speech["voice"], speed=speech["speed"], pitch=speech["pitch"])
      clip = audio_lib.crop_or_pad(clip, SAMPLE_RATE, rng=np.random.default_rng([2, spec["seed"]]))
      yield spec["key"], self._example(spec, clip, source=f"espeak-ng:{speech['voice']}")

  def _example(self, spec, clip, source=None):
    peak = np.abs(clip).max(initial=0.0)
    if peak < 1e-4:  # a silent note is a plan error (a pitch outside its sample's range)
      raise RuntimeError(f"kd_sea_general: silent clip for {spec}.")
    return {
        "audio": (clip * (10.0 ** (spec["peak_db"] / 20.0) / peak)).astype(np.float32),
        "sample_rate": SAMPLE_RATE,
        "label": spec["label"],
        "program": spec.get("program", -1),
        "pitch": spec.get("pitch", -1),
        "velocity": spec.get("velocity", -1),
        "source": source or spec.get("source", "FluidR3_GM"),
    }


class SeaDrumPool(sea_audio.SeaBuilder):
  """T's distillation pool (SYNTHETIC): TimGM6mb drum grooves at random gains, with loudness."""

  name = "kd_sea_drum_pool"
  BUILDER_CONFIGS = sea_audio.SeaBuilder.configs(750, 10)
  DESCRIPTION = (
      "SEA cpu target-domain pool: synthetic 1 s drum grooves, random gain, A-weighted Leq."
  )

  def check_packages(self):
    soundfont("TimGM6mb")
    sea_audio.program("fluidsynth", "fluidsynth")

  def _features(self):
    return {
        **sea_audio.audio_features(),
        "loudness": tfds.features.Tensor(shape=(), dtype=np.float32),
        "gain_db": tfds.features.Tensor(shape=(), dtype=np.float32),
        "kit": tfds.features.Tensor(shape=(), dtype=np.int32),
    }

  def _split_generators(self, dl_manager):
    del dl_manager
    rng, per_kit = np.random.default_rng(3), self.builder_config.size
    kits = [k for k in DRUM_KITS for _ in range(per_kit)]
    specs = [
        {"key": f"{i:06d}", "kit": k, "slot": random_groove(rng, k), "gain_db": g}
        for i, (k, g) in enumerate(zip(kits, rng.uniform(-40.0, 0.0, size=len(kits))))
    ]
    splits = splitting.stratified_split(kits, seed=0)
    return {
        s: self._generate_examples([p for p, t in zip(specs, splits) if t == s])
        for s in ("train", "validation", "test")
    }

  def _generate_examples(self, specs):
    for first in range(0, len(specs), SLOTS_PER_RENDER):
      chunk = specs[first : first + SLOTS_PER_RENDER]
      clips = render([s["slot"] for s in chunk], "TimGM6mb")
      gains = 10.0 ** (np.array([s["gain_db"] for s in chunk]) / 20.0)
      clips = clips * gains[:, None]
      # Float rendering can exceed full scale on dense grooves; such a clip is scaled to 0 dBFS
      # peak and its gain_db records what was really applied.
      peaks = np.maximum(np.abs(clips).max(axis=1), 1e-12)
      over = np.maximum(peaks, 1.0)
      clips = (clips / over[:, None]).astype(np.float32)
      levels = sea_audio.a_weighted_levels(clips)
      for spec, clip, level, scale in zip(chunk, clips, levels, over):
        yield spec["key"], {
            "audio": clip,
            "sample_rate": SAMPLE_RATE,
            "loudness": level,
            "gain_db": np.float32(spec["gain_db"] - 20.0 * np.log10(scale)),
            "kit": spec["kit"],
        }


def general(split, *, data_dir=None, manual_dir=None, config="full"):
  """G: SYNTHETIC GM notes (16 families), FluidR3 drum grooves, espeak-ng speech; 1 s each."""
  del manual_dir  # from Debian packages
  return sea_audio.open_source(SeaGeneral, split, data_dir, config)


def drum_pool(split, *, data_dir=None, manual_dir=None, config="full"):
  """T pool: SYNTHETIC TimGM6mb drum grooves at −40…0 dB, with "loudness" (dBFS, A-weighted)."""
  del manual_dir
  return sea_audio.open_source(SeaDrumPool, split, data_dir, config)
