"""Reading a daemon's /metrics in the integration tests, with the Prometheus
project's own text parser (python3-prometheus-client)."""

from prometheus_client.parser import text_string_to_metric_families


def scrape(daemon):
    status, headers, body = daemon.http_get("/metrics")
    assert status == 200, (status, body)
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4"), headers
    families = {f.name: f for f in text_string_to_metric_families(body)}
    return families


def value(families, name, **labels):
    """The value of the sample called `name` with these labels, in whichever
    family it is, or None when there is none."""
    for f in families.values():
        for s in f.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def sample(families, family, name=None, **labels):
    """The value of the one sample of `family` named `name` with these labels
    (0 when absent: counters that never moved are not exported)."""
    name = name or family
    for s in families[family].samples if family in families else []:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return 0.0
