#!/usr/bin/env bash
# Make sure the real Fashion-MNIST files (Debian package dataset-fashion-mnist) are present.
set -eu
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/t10k-images-idx3-ubyte.gz" ] && [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Fashion-MNIST is missing: installing the Debian package dataset-fashion-mnist" >&2
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
else
  echo "Fashion-MNIST is missing. Install it with: sudo apt-get install dataset-fashion-mnist" >&2
  echo "(or point --dataset fashion-mnist:PATH at a folder with the IDX .gz files)" >&2
  exit 1
fi
