#!/bin/sh
# Builds PyTorch from source for the CUDA archs in TORCH_CUDA_ARCH_LIST (2-4 hours
# for sm_52) into $1, only when BUILD_FROM_SOURCE=true; otherwise it only creates
# an empty $1 and returns at once (no apt, no download), so the stage costs
# nothing for the targets that use binary wheels.
# Its cache mount keeps the checkout (one per version) and ccache between builds
# on the same runner; PyTorch's build picks ccache up by itself when installed.
set -eu
out="$1"
mkdir -p "$out"
if [ "${BUILD_FROM_SOURCE:-false}" != "true" ]; then
  exit 0
fi
: "${TORCH_SOURCE_VERSION:?TORCH_SOURCE_VERSION is required}"
: "${TORCH_CUDA_ARCH_LIST:?TORCH_CUDA_ARCH_LIST is required for a source build}"
rm -f /etc/apt/apt.conf.d/docker-clean
apt-get update
apt-get install -y --no-install-recommends git ca-certificates python3-dev python3-pip ninja-build cmake ccache
cache=/root/.cache/torch-src
src="$cache/pytorch-$TORCH_SOURCE_VERSION"
if [ ! -d "$src/.git" ]; then
  rm -rf "$src"
  git clone --recursive --depth 1 --shallow-submodules --branch "$TORCH_SOURCE_VERSION" https://github.com/pytorch/pytorch "$src"
fi
cd "$src"
python3 -m pip install -r requirements.txt
MAX_JOBS="$(nproc)"
export USE_CUDA=1 USE_CUDNN=1 BUILD_TEST=0 MAX_JOBS CCACHE_DIR="$cache/ccache"
export TORCH_CUDA_ARCH_LIST
rm -rf dist
python3 setup.py bdist_wheel
python3 -m pip install --no-deps --target "$out/site-packages" dist/torch-*.whl
