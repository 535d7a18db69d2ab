#!/bin/sh
# Turns a CUDA arch list ("6.0;8.6;9.0+PTX") into nvcc -gencode flags.
set -eu
flags=""
for arch in $(echo "$1" | tr ';' ' '); do
  sm=$(echo "${arch%+PTX}" | tr -d '.')
  flags="$flags -gencode arch=compute_${sm},code=sm_${sm}"
  case "$arch" in *+PTX) flags="$flags -gencode arch=compute_${sm},code=compute_${sm}" ;; esac
done
echo "$flags"
