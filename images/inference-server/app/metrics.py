"""Prometheus metrics of the reference server, standard library only.

Rendered in the Prometheus text exposition format 0.0.4 (what GET /metrics
answers with CONTENT_TYPE). Every metric is safe to update from the server's
request threads.

    inference_requests_total{path,status}              counter
    inference_request_duration_seconds{path}           histogram (_bucket{le}, _sum, _count)
    inference_requests_in_flight                       gauge
    inference_inputs_total                             counter   input vectors inferred
    inference_model_load_seconds                       gauge     model and kernel load at start
    inference_model_info{target,isa,model}             gauge     always 1
    process_start_time_seconds                         gauge     Unix time the server started
"""
import math
import threading
import time

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Request latency buckets (seconds): from a 1 ms health check to a 10 s batch.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def escape_label_value(value) -> str:
    """A label value as the text format wants it: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: integers without a fraction, +Inf/-Inf/NaN as the format spells them."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(names, values, extra=()) -> str:
    pairs = [f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values)]
    pairs += [f'{n}="{escape_label_value(v)}"' for n, v in extra]
    return "{" + ",".join(pairs) + "}" if pairs else ""


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels=()):
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict) -> tuple:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {', '.join(self.label_names) or 'none'}, got {', '.join(sorted(labels)) or 'none'}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list:
        help_text = self.help.replace("\\", "\\\\").replace("\n", "\\n")
        return [f"# HELP {self.name} {help_text}", f"# TYPE {self.name} {self.kind}"]


class _Values(_Metric):
    """A metric that is one number per label set (counters and gauges)."""

    def __init__(self, name, help_text, labels=()):
        super().__init__(name, help_text, labels)
        self._values = {}

    def _add(self, amount: float, labels: dict) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def render(self) -> list:
        with self._lock:
            items = sorted(self._values.items())
        lines = self.header()
        if not items and not self.label_names:
            items = [((), 0.0)]
        lines += [f"{self.name}{_labels(self.label_names, key)} {format_value(v)}" for key, v in items]
        return lines


class Counter(_Values):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        self._add(amount, labels)


class Gauge(_Values):
    kind = "gauge"

    def set(self, value: float, **labels) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels) -> None:
        self._add(amount, labels)

    def dec(self, amount: float = 1.0, **labels) -> None:
        self._add(-amount, labels)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name, help_text, labels=(), buckets=LATENCY_BUCKETS):
        super().__init__(name, help_text, labels)
        bounds = sorted(float(b) for b in buckets)
        if not bounds or len(set(bounds)) != len(bounds) or math.isinf(bounds[-1]):
            raise ValueError("histogram buckets must be distinct finite upper bounds (+Inf is added)")
        self.buckets = tuple(bounds)
        self._series = {}  # key -> [per-bucket counts (not cumulative) + one for +Inf, sum]

    def observe(self, value: float, **labels) -> None:
        key = self._key(labels)
        with self._lock:
            counts, total = self._series.get(key, ([0] * (len(self.buckets) + 1), 0.0))
            index = next((i for i, bound in enumerate(self.buckets) if value <= bound), len(self.buckets))
            counts[index] += 1
            self._series[key] = (counts, total + value)

    def count(self, **labels) -> int:
        with self._lock:
            counts, _ = self._series.get(self._key(labels), ([0], 0.0))
            return sum(counts)

    def render(self) -> list:
        with self._lock:
            items = sorted((key, (list(counts), total)) for key, (counts, total) in self._series.items())
        lines = self.header()
        for key, (counts, total) in items:
            cumulative = 0
            for bound, n in zip(self.buckets + (math.inf,), counts):
                cumulative += n
                le = format_value(bound) if math.isinf(bound) else repr(bound)
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, [('le', le)])} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {format_value(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {cumulative}")
        return lines


class Registry:
    """The metrics one server exposes, rendered in registration order."""

    def __init__(self):
        self._metrics = []
        self._names = set()

    def register(self, metric):
        if metric.name in self._names:
            raise ValueError(f"metric {metric.name} is registered twice")
        self._names.add(metric.name)
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        lines = []
        for metric in self._metrics:
            lines += metric.render()
        return "\n".join(lines) + "\n"


class ServerMetrics:
    """The reference server's metrics (see the module docstring)."""

    # Paths with their own series; anything else is counted as "other" (bounded label values).
    KNOWN_PATHS = ("/healthz", "/metrics", "/v1/infer")

    def __init__(self, clock=time.time):
        self.registry = Registry()
        r = self.registry.register
        self.requests = r(Counter("inference_requests_total", "HTTP requests answered, by path and status code.", ("path", "status")))
        self.latency = r(Histogram("inference_request_duration_seconds", "Time from reading a request to the last byte of its answer, in seconds.", ("path",)))
        self.in_flight = r(Gauge("inference_requests_in_flight", "Requests being answered right now."))
        self.inputs = r(Counter("inference_inputs_total", "Input vectors inferred."))
        self.model_load = r(Gauge("inference_model_load_seconds", "Time the server took to load the model and the kernel at start, in seconds."))
        self.model_info = r(Gauge("inference_model_info", "The model being served: hardware target, kernel instruction set and model file (always 1).", ("target", "isa", "model")))
        self.started = r(Gauge("process_start_time_seconds", "Start time of the server since the Unix epoch, in seconds."))
        self.started.set(clock())

    def path_label(self, path: str) -> str:
        path = path.split("?", 1)[0]
        return path if path in self.KNOWN_PATHS else "other"

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        label = self.path_label(path)
        self.requests.inc(path=label, status=str(status))
        self.latency.observe(seconds, path=label)

    def render(self) -> str:
        return self.registry.render()
