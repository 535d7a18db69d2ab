"""Reference inference server.

GET  /healthz      -> {"status": "ok", "target": ..., "isa": ...}
POST /v1/infer     {"inputs": [[64 floats], ...]} -> {"outputs": [[10 probabilities], ...]}
GET  /metrics      -> Prometheus text format 0.0.4 (request counts and latency by
                      path, model load time; see metrics.py), on the same port

The dense layers run in a C kernel compiled for the image's hardware target.
At start the server checks that this CPU has the instruction sets the target
was compiled for (REQUIRED_CPU_FEATURES) and, for GPU targets (REQUIRE_GPU=1),
that the kernel sees a GPU; it refuses to start if not (exit code 78), instead
of dying later with SIGILL or a CUDA error. SIGTERM stops it cleanly.
"""
import ctypes
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from metrics import ServerMetrics

EXIT_WRONG_CPU = 78  # EX_CONFIG: this image does not fit this host
MAX_BODY_BYTES = 1 << 20


def cpu_flags() -> set:
    flags = set()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                flags.update(value.split())
    return flags


def check_cpu(target: str, required: list) -> None:
    missing = [f for f in required if f not in cpu_flags()]
    if missing:
        sys.stderr.write(
            f"refusing to start: this image is built for hardware target '{target}' and needs CPU "
            f"features {', '.join(required)}; this CPU lacks {', '.join(missing)}. "
            f"Deploy the image of a target this host supports.\n"
        )
        sys.exit(EXIT_WRONG_CPU)


def check_gpu(target: str, lib) -> None:
    count = lib.kernel_device_count() if hasattr(lib, "kernel_device_count") else 0
    if count < 1:
        sys.stderr.write(
            f"refusing to start: this image is built for hardware target '{target}' and needs a GPU; "
            f"the CUDA runtime sees none (run it with the GPU exposed, e.g. docker run --gpus all).\n"
        )
        sys.exit(EXIT_WRONG_CPU)


class Model:
    def __init__(self, model_path: str, kernel_path: str):
        weights = np.load(model_path)
        self.layers = [(weights["w1"], weights["b1"]), (weights["w2"], weights["b2"])]
        self.lib = ctypes.CDLL(kernel_path)
        self.lib.kernel_isa.restype = ctypes.c_char_p
        ptr = ctypes.POINTER(ctypes.c_float)
        self.lib.matvec.argtypes = [ptr, ptr, ptr, ptr, ctypes.c_size_t, ctypes.c_size_t]
        self.isa = self.lib.kernel_isa().decode()

    def _dense(self, w, b, x):
        y = np.empty(w.shape[0], dtype=np.float32)
        ptr = ctypes.POINTER(ctypes.c_float)
        self.lib.matvec(w.ctypes.data_as(ptr), x.ctypes.data_as(ptr), b.ctypes.data_as(ptr),
                        y.ctypes.data_as(ptr), w.shape[0], w.shape[1])
        return y

    def infer(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        (w1, b1), (w2, b2) = self.layers
        if x.shape != (w1.shape[1],):
            raise ValueError(f"each input needs {w1.shape[1]} numbers")
        h = np.maximum(self._dense(w1, b1, x), 0.0)
        z = self._dense(w2, b2, h)
        e = np.exp(z - z.max())
        return (e / e.sum()).tolist()


def make_handler(model: Model, target: str, metrics: ServerMetrics):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict) -> None:
            self._send_bytes(code, json.dumps(body).encode(), "application/json")

        def _send_bytes(self, code: int, data: bytes, content_type: str) -> None:
            self._status = code
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _measured(self, answer) -> None:
            """Answers the request and records it: count by path and status, latency, in flight."""
            started = time.perf_counter()
            self._status = 500
            metrics.in_flight.inc()
            try:
                answer()
            finally:
                metrics.in_flight.dec()
                metrics.observe_request(self.path, self._status, time.perf_counter() - started)

        def do_GET(self):  # noqa: N802
            self._measured(self._get)

        def do_POST(self):  # noqa: N802
            self._measured(self._post)

        def _get(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._send(200, {"status": "ok", "target": target, "isa": model.isa})
            elif path == "/metrics":
                self._send_bytes(200, metrics.render().encode(), METRICS_CONTENT_TYPE)
            else:
                self._send(404, {"error": "not found"})

        def _post(self) -> None:
            if self.path != "/v1/infer":
                self._send(404, {"error": "not found"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
                if length > MAX_BODY_BYTES:
                    self._send(413, {"error": f"request body over {MAX_BODY_BYTES} bytes"})
                    return
                request = json.loads(self.rfile.read(length))
                outputs = [model.infer(x) for x in request["inputs"]]
            except (ValueError, KeyError, TypeError) as err:
                self._send(400, {"error": str(err)})
                return
            metrics.inputs.inc(len(outputs))
            self._send(200, {"outputs": outputs, "target": target})

        def log_message(self, fmt, *args):
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    return Handler


def main() -> None:
    target = os.environ.get("TARGET_NAME", "unknown")
    check_cpu(target, os.environ.get("REQUIRED_CPU_FEATURES", "").split())
    metrics = ServerMetrics()
    loading = time.perf_counter()
    model = Model(os.environ["MODEL_PATH"], os.environ["KERNEL_PATH"])
    metrics.model_load.set(time.perf_counter() - loading)
    metrics.model_info.set(1, target=target, isa=model.isa, model=os.path.basename(os.environ["MODEL_PATH"]))
    if os.environ.get("REQUIRE_GPU") == "1":
        check_gpu(target, model.lib)
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((os.environ.get("BIND", "0.0.0.0"), port), make_handler(model, target, metrics))
    # As PID 1 in a container SIGTERM would otherwise be ignored until SIGKILL.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stderr.write(f"serving target {target} ({model.isa} kernel) on port {port}\n")
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
