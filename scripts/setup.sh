#!/usr/bin/env bash
# Installs what kdcache needs to build, test and run its main job on Debian/Ubuntu.
# Idempotent: packages already present are skipped, so a second run does nothing.
set -euo pipefail

PKGS=(
  build-essential pkg-config make
  libhdf5-dev hdf5-tools hdf5-filter-plugin liblz4-dev
  libturbojpeg0-dev libjpeg-turbo-progs
  libopenblas-dev libdnnl-dev
  libjansson-dev nettle-dev zlib1g-dev
  check
  libopenmpi-dev openmpi-bin
  python3-torch python3-torchvision python3-h5py python3-hdf5plugin python3-numpy python3-pil
  python3-pytest python3-setuptools python3-pip
  dataset-fashion-mnist
  gnuplot-nox
  debootstrap
  mate-backgrounds
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1
  fi
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
