#!/usr/bin/env bash
# Installs what mislas needs and is missing, then links it into the checkout:
#   * a Python virtual environment with PyTorch 2.11.0 (libtorch for tch 0.24), NumPy and
#     torchvision 0.26.0 with Pillow (the large-scale tests compare against them), kept
#     per user in ${MISLAS_VENV:-$XDG_CACHE_HOME/mislas/torch-2.11.0} so that clones share its ~4.7 GB;
#     `.venv` and `.libtorch` in the checkout are symlinks to it (LIBTORCH in the environment wins);
#   * Debian's dataset-fashion-mnist (the default data set), libjpeg62-turbo-dev (JPEG decoding)
#     and tmux (the terminal UI's end-to-end test), when apt-get can be run.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is missing: install Rust with rustup (https://rustup.rs), then run this again" >&2
  exit 1
fi

# Installs Debian packages when this runs as root with apt-get; otherwise says what to install.
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian's $*" >&2
    apt-get install -y -q "$@" >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$@" >/dev/null; }
  else
    echo "setup: please install: sudo apt-get install $*" >&2
    return 1
  fi
}

TORCH_VERSION=2.11.0
# The torchvision release built against that PyTorch.
TORCHVISION_VERSION=0.26.0
venv="${MISLAS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/mislas/torch-$TORCH_VERSION}"
py="$venv/bin/python"

if ! "$py" -c "import torch, numpy, PIL, torchvision, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' and torchvision.__version__.split('+')[0] == '$TORCHVISION_VERSION' else 1)" 2>/dev/null; then
  echo "setup: installing PyTorch $TORCH_VERSION and NumPy into $venv (once; about 4.7 GB)" >&2
  mkdir -p "$(dirname "$venv")"
  if ! python3 -m venv "$venv"; then
    # Debian and Ubuntu ship venv's pip bootstrap separately.
    apt_install python3-venv && python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" numpy \
    "torchvision==$TORCHVISION_VERSION"
fi
ln -sfn "$venv" .venv
torch_dir=$("$py" -c "import os, torch; print(os.path.dirname(torch.__file__))")
ln -sfn "$torch_dir" .libtorch

fmnist=/usr/share/datasets/fashion-mnist
if [ ! -e "$fmnist/train-images-idx3-ubyte.gz" ] && [ ! -e "$fmnist/train-images-idx3-ubyte" ]; then
  apt_install dataset-fashion-mnist ||
    echo "setup: without $fmnist the Fashion-MNIST runs and tests cannot start" >&2
fi
# libjpeg-turbo's headers and library: mislas decodes JPEGs with it (build.rs stops without it).
[ -e /usr/include/jpeglib.h ] || [ -n "${MISLAS_JPEG_INCLUDE:-}" ] || apt_install libjpeg62-turbo-dev ||
  echo "setup: without libjpeg-turbo's development files (libjpeg62-turbo-dev) mislas does not build" >&2
command -v tmux >/dev/null || apt_install tmux ||
  echo "setup: without tmux the terminal UI's end-to-end test skips itself" >&2
# Data parallel (src/dist): gloo's headers for ProcessGroupGloo (libtorch already contains gloo
# itself; only its headers are needed), and for ProcessGroupNCCL the CUDA headers the torch
# wheels leave out (CCCL's nv/target, crt/host_config.h), from the wheels of torch's CUDA 13.0.
# Without them mislas still builds: one process, or no NCCL, said at run time.
[ -e /usr/include/gloo/algorithm.h ] || [ -n "${MISLAS_GLOO_INCLUDE:-}" ] || apt_install libgloo-dev ||
  echo "setup: without libgloo-dev's headers mislas trains on one process only" >&2
cuda_inc="$torch_dir/../nvidia/cu13/include"
if [ -d "$cuda_inc" ] && { [ ! -e "$cuda_inc/cccl/nv/target" ] || [ ! -e "$cuda_inc/crt/host_config.h" ]; }; then
  echo "setup: installing CUDA 13.0's CCCL and CRT headers into $venv (for NCCL)" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
    "nvidia-cuda-cccl==13.0.*" "nvidia-cuda-crt==13.0.*" ||
    echo "setup: without them mislas is built without NCCL (multi-GPU training)" >&2
fi
# DejaVu Sans: the text of `mislas compare`'s figures (plotters draws it with ab_glyph).
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || [ -n "${MISLAS_FONT:-}" ] ||
  apt_install fonts-dejavu-core ||
  echo "setup: without fonts-dejavu-core (or MISLAS_FONT) mislas compare writes no figures" >&2
