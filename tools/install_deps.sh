#!/bin/bash
# Installs the Debian 12 packages onnxtl builds and tests with, when missing.
# A no-op when everything is present; needs root (or sudo) otherwise.
set -eu
PKGS="build-essential protobuf-c-compiler libprotobuf-c-dev libonnx-dev libturbojpeg0-dev
      libdnnl-dev python3-numpy python3-torch python3-torchvision python3-onnx python3-pil
      python3-sklearn chromium pkg-config man-db"
# `install_deps.sh fuzz`: also clang with libFuzzer and its OpenMP runtime (make fuzz).
[ "${1:-}" = fuzz ] && PKGS="$PKGS clang libclang-rt-14-dev libomp-dev"
# `install_deps.sh slurm`: also Slurm and munge, for the test that runs a single-node
# cluster under a temporary folder (the packages' own services stay unconfigured).
[ "${1:-}" = slurm ] && PKGS="$PKGS slurmctld slurmd slurm-client munge"
missing=()
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "onnxtl: installing missing Debian packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
