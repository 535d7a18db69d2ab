#!/bin/sh
# The GPU check of the CUDA targets, run in build steps that ask BuildKit for
# the GPU (RUN --device=nvidia.com/gpu=all,required=true; the gpu pool's
# buildkitd exposes the GPUs through the CDI spec `nvidia-ctk cdi generate`
# writes at boot). It records what the step saw in a report that goes into
# the image:
#
#   gpu-check.sh query REPORT            device query: nvidia-smi -L when the driver's tools
#                                        were injected, the environment CDI set, /dev/nvidia*
#                                        nodes; fails when the step saw no GPU at all
#   gpu-check.sh selftest KERNEL REPORT  on a real GPU: runs the compiled CUDA kernel (KERNEL,
#                                        the matvec library) against a NumPy reference and
#                                        appends the result; fails when no GPU is usable or
#                                        the results differ
#
# The report is deterministic (no times, no host names), so an unchanged GPU
# gives an unchanged layer.
set -eu

usage() {
  echo "usage: gpu-check.sh query REPORT | gpu-check.sh selftest KERNEL REPORT" >&2
  exit 2
}

line() { printf '%s\n' "$*" >>"$report"; }

query() {
  seen=0
  mkdir -p "$(dirname "$report")"
  : >"$report"
  line "gpu-check: target=${TARGET_NAME:-unknown}"
  line "device-request: nvidia.com/gpu=all (required)"
  # What CDI put into the environment (the stand-in GPU sets ML_INFRA_GPU_STAND_IN;
  # NVIDIA's spec sets NVIDIA_* variables).
  env | LC_ALL=C sort | grep -E '^(NVIDIA_[A-Z_]+|ML_INFRA_GPU_[A-Z_]+|CUDA_VISIBLE_DEVICES)=' >"$report.env" || true
  while IFS= read -r var; do
    line "env: $var"
    seen=1
  done <"$report.env"
  rm -f "$report.env"
  for dev in /dev/nvidia*; do
    [ -e "$dev" ] || continue
    line "dev: $dev"
    seen=1
  done
  if command -v nvidia-smi >/dev/null 2>&1; then
    if nvidia-smi -L >"$report.smi" 2>&1; then
      while IFS= read -r gpu; do line "nvidia-smi: $gpu"; done <"$report.smi"
      seen=1
    else
      line "nvidia-smi: failed: $(head -n 1 "$report.smi")"
    fi
    rm -f "$report.smi"
  else
    line "nvidia-smi: absent"
  fi
  if [ "$seen" -eq 0 ]; then
    line "result: no GPU visible"
    cat "$report" >&2
    echo "gpu-check: this build step saw no GPU (no CDI environment, no /dev/nvidia*, no nvidia-smi)" >&2
    exit 1
  fi
  line "result: device visible"
  cat "$report"
}

selftest() {
  [ -f "$report" ] || { echo "gpu-check: run the query first ($report is missing)" >&2; exit 1; }
  status=0
  python3 - "$kernel" >>"$report" <<'EOF' || status=$?
import ctypes
import sys

import numpy as np

path = sys.argv[1]
lib = ctypes.CDLL(path)
lib.kernel_isa.restype = ctypes.c_char_p
isa = lib.kernel_isa().decode()
devices = lib.kernel_device_count() if hasattr(lib, "kernel_device_count") else 0
if devices < 1:
    print(f"selftest: kernel={path} isa={isa} devices=0 FAILED: the CUDA runtime sees no GPU")
    sys.exit(1)
rows, cols = 1000, 777  # not multiples of the block size
rng = np.random.default_rng(0)
w = rng.standard_normal((rows, cols)).astype(np.float32)
x = rng.standard_normal(cols).astype(np.float32)
b = rng.standard_normal(rows).astype(np.float32)
y = np.full(rows, np.nan, dtype=np.float32)
ptr = ctypes.POINTER(ctypes.c_float)
lib.matvec.argtypes = [ptr, ptr, ptr, ptr, ctypes.c_size_t, ctypes.c_size_t]
lib.matvec(w.ctypes.data_as(ptr), x.ctypes.data_as(ptr), b.ctypes.data_as(ptr), y.ctypes.data_as(ptr), rows, cols)
reference = w.astype(np.float64) @ x.astype(np.float64) + b
err = float(np.max(np.abs(y - reference)))
ok = bool(np.isfinite(err)) and err <= 1e-3 * float(np.max(np.abs(reference)))
print(f"selftest: kernel={path} isa={isa} devices={devices} rows={rows} cols={cols} max_abs_err={err:.1e} {'ok' if ok else 'FAILED'}")
sys.exit(0 if ok else 1)
EOF
  cat "$report"
  return "$status"
}

[ "$#" -ge 2 ] || usage
case "$1" in
query)
  [ "$#" -eq 2 ] || usage
  report=$2
  query
  ;;
selftest)
  [ "$#" -eq 3 ] || usage
  kernel=$2
  report=$3
  selftest
  ;;
*) usage ;;
esac
