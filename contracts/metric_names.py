"""The Prometheus metrics Streamwhisk serves: series names, types and label names (issue 18's contract).

One list for the parts that export them (every component's /metrics), the Grafana dashboards in
helm/streamwhisk/files/dashboards (tests/unit/test_dashboards.py checks every query against it) and the console.

`name` is the series name exactly as it appears in the exposition (a histogram's is the stem of its _bucket, _sum
and _count series). The openwhisk_action_* ones are OpenWhisk's user-events names and labels
(core/monitoring/user-events, PrometheusRecorder), so OpenWhisk's own dashboards work against Streamwhisk. Upstream
registers them with Java simpleclient 0.6, which writes a counter's name unchanged: openwhisk_action_status has no
_total suffix there (prometheus_client's Counter would add one, so it needs a collector that keeps the name).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

MetricType = Literal["counter", "gauge", "histogram"]


class Metric(NamedTuple):
    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str


# Upstream's label names (MetricNames.scala): the action's namespace, the namespace of the subject that invoked.
_OW = ("namespace", "initiator", "action")

# Values of openwhisk_action_status{status}: OpenWhisk's ActivationResponse status strings.
ACTIVATION_STATUSES = ("success", "application_error", "action_developer_error", "whisk_internal_error")

# Upstream uses the client's default buckets for its time histograms (seconds); prometheus_client has the same.
OPENWHISK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# And linearBuckets(0, 1 MiB, 10) for the response size (bytes).
RESPONSE_SIZE_BUCKETS = tuple(float(i * 1048576) for i in range(10))

# Contract values of the enumerated Streamwhisk labels.
CONTAINER_STATES = ("busy", "warm", "prewarm")
MEMORY_KINDS = ("used", "limit")

_ALL = (
    # Activation metrics, derived from the completions log by a stream processor.
    Metric("openwhisk_action_activations_total", "counter", (*_OW, "kind", "memory"), "Activation Count"),
    Metric("openwhisk_action_coldStarts_total", "counter", _OW, "Cold start counts"),
    Metric("openwhisk_action_status", "counter", (*_OW, "status"), "Activation failure status type"),
    Metric("openwhisk_action_duration_seconds", "histogram", _OW, "Actual time the action code was running"),
    Metric("openwhisk_action_waitTime_seconds", "histogram", _OW, "Internal system hold time"),
    Metric("openwhisk_action_initTime_seconds", "histogram", _OW,
           "Time it took to initialize an action, e.g. docker init"),
    Metric("openwhisk_action_status_code", "counter", (*_OW, "status_code"),
           "status code returned in action result response set by developer"),
    Metric("openwhisk_action_response_size_bytes", "histogram", _OW, "Activation Response size"),
    Metric("openwhisk_action_memory", "gauge", _OW, "Memory consumption of the action containers"),
    # Throttles (rejected invocations, 429). Upstream labels them with the initiator's namespace, named `namespace`.
    Metric("openwhisk_action_limit_concurrent_total", "counter", ("namespace",),
           "a user has exceeded its limit for concurrent invocations"),
    Metric("openwhisk_action_limit_timed_total", "counter", ("namespace",),
           "the user has reached its per minute limit for the number of invocations"),
    # Streamwhisk's own.
    Metric("streamwhisk_kafka_consumer_lag", "gauge", ("component", "group", "topic", "partition"),
           "End offset minus the consumer's committed or current position"),
    Metric("streamwhisk_api_requests_total", "counter", ("method", "code"), "API requests answered"),
    Metric("streamwhisk_api_request_duration_seconds", "histogram", ("method",), "API request duration"),
    Metric("streamwhisk_invoker_containers", "gauge", ("invoker", "state"), "Action containers by state"),
    Metric("streamwhisk_invoker_memory_mb", "gauge", ("invoker", "kind"), "Invoker memory for actions, used and limit"),
    Metric("streamwhisk_invoker_healthy", "gauge", ("invoker",), "1 if the balancer sees the invoker healthy"),
    Metric("streamwhisk_projection_applied_total", "counter", ("projector",), "Events applied by a projector"),
    Metric("streamwhisk_replay_progress_ratio", "gauge", ("generation",), "Share of the log a replay has read"),
    Metric("streamwhisk_replay_events_total", "counter", ("generation",), "Events read by a replay"),
)

METRICS: dict[str, Metric] = {m.name: m for m in _ALL}

# prometheus_client's default collectors (process_* on Linux, python_*), on every component's /metrics.
DEFAULT_COLLECTORS: dict[str, Metric] = {m.name: m for m in (
    Metric("process_cpu_seconds_total", "counter", (), "Total user and system CPU time spent in seconds"),
    Metric("process_resident_memory_bytes", "gauge", (), "Resident memory size in bytes"),
    Metric("process_virtual_memory_bytes", "gauge", (), "Virtual memory size in bytes"),
    Metric("process_start_time_seconds", "gauge", (), "Start time of the process since unix epoch in seconds"),
    Metric("process_open_fds", "gauge", (), "Number of open file descriptors"),
    Metric("process_max_fds", "gauge", (), "Maximum number of open file descriptors"),
    Metric("python_gc_collections_total", "counter", ("generation",), "Number of times this generation was collected"),
    Metric("python_info", "gauge", ("implementation", "major", "minor", "patchlevel", "version"), "Python platform"),
)}

# Series Prometheus itself records for every target.
SCRAPE_SERIES: dict[str, Metric] = {m.name: m for m in (
    Metric("up", "gauge", (), "1 if the last scrape of the target succeeded"),
    Metric("scrape_duration_seconds", "gauge", (), "Duration of the last scrape"),
)}

# Labels every series gets at scrape time: Prometheus's job/instance, and those the chart's scrape configuration
# (pod-annotation job and ServiceMonitors alike) adds. Not `namespace`: that one is the OpenWhisk namespace.
TARGET_LABELS = ("job", "instance", "kubernetes_namespace", "kubernetes_pod_name", "streamwhisk_component")


def known_series() -> dict[str, Metric]:
    """Every series name a query may use, mapped to its metric (histograms by their _bucket, _sum and _count)."""
    out: dict[str, Metric] = {}
    for m in (*METRICS.values(), *DEFAULT_COLLECTORS.values(), *SCRAPE_SERIES.values()):
        if m.type == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                out[m.name + suffix] = m
        else:
            out[m.name] = m
    return out


def series_labels(series: str) -> frozenset[str]:
    """Labels a series may carry: its own, the target labels, and `le` on a histogram's buckets."""
    m = known_series()[series]
    extra = ("le",) if series.endswith("_bucket") and m.type == "histogram" else ()
    return frozenset((*m.labels, *TARGET_LABELS, *extra))
