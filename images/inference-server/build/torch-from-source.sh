#!/bin/sh
# Builds PyTorch from source for the CUDA archs in TORCH_CUDA_ARCH_LIST (2-4 hours
# for sm_52) into $1, only when BUILD_FROM_SOURCE=true; otherwise leaves $1 empty.
# Its cache mount keeps the checkout and ccache between builds on the same runner.
set -eu
out="$1"
mkdir -p "$out"
if [ "${BUILD_FROM_SOURCE:-false}" != "true" ]; then
  exit 0
fi
rm -f /etc/apt/apt.conf.d/docker-clean
apt-get update
apt-get install -y --no-install-recommends git ca-certificates python3-dev python3-pip ninja-build cmake ccache
src=/root/.cache/torch-src/pytorch
if [ ! -d "$src/.git" ]; then
  git clone --recursive --depth 1 --branch "$TORCH_SOURCE_VERSION" https://github.com/pytorch/pytorch "$src"
fi
cd "$src"
python3 -m pip install -r requirements.txt
export USE_CUDA=1 USE_CUDNN=1 BUILD_TEST=0 MAX_JOBS="$(nproc)" CCACHE_DIR=/root/.cache/torch-src/ccache
export TORCH_CUDA_ARCH_LIST
python3 setup.py bdist_wheel
python3 -m pip install --no-deps --target "$out/site-packages" dist/torch-*.whl
