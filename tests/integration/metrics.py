"""Reading Prometheus text exposition with the client library's own parser."""

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series has not been created yet."""
    return samples(text).get((name, frozenset(labels.items())), 0.0)
