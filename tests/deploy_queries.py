"""The PromQL of deploy/: every expression of the Grafana dashboard and the alert rules,
and the metric names each one reads.

The rules file is YAML, and the test environment has no YAML parser; the file's layout is
ours, so its expressions are read by their keys: ``expr: <one line>`` or ``expr: |``
followed by the more-indented lines of the block. ``promtool check rules`` parses the
same file for real (tests/integration/test_prometheus.py), so a layout this reader
misread would not pass both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "supernode.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# Grafana's range variable, replaced by a fixed range where Prometheus evaluates a query.
RATE_INTERVAL = "$__rate_interval"

# PromQL words that look like names: functions, aggregations and their modifiers.
_KEYWORDS = frozenset(
    {
        "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "by", "without",
        "histogram_quantile", "max_over_time", "min_over_time", "avg_over_time", "and", "or",
        "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset", "resets",
        "abs", "clamp_min", "clamp_max", "topk", "bottomk", "time", "vector", "scalar",
        "le", "inf", "nan",
    }
)  # fmt: skip
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def dashboard_queries() -> list[str]:
    """Every target expression of every panel (rows hold none)."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_queries() -> dict[str, str]:
    """Each alert rule's expression, by alert name."""
    queries: dict[str, str] = {}
    alert = ""
    lines = ALERTS.read_text().splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("- alert:"):
            alert = stripped.split(":", 1)[1].strip()
        elif stripped.startswith("expr:"):
            value = stripped.split(":", 1)[1].strip()
            if value == "|":
                indent = len(line) - len(line.lstrip())
                block = []
                for following in lines[i + 1 :]:
                    if following.strip() and len(following) - len(following.lstrip()) <= indent:
                        break
                    block.append(following.strip())
                value = " ".join(part for part in block if part)
            queries[alert] = value
    return queries


def metric_names(query: str) -> set[str]:
    """The metric names ``query`` selects: names outside ``{...}`` label matchers, string
    literals and ``by (...)`` / ``without (...)`` groupings, that are not functions,
    keywords or numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    names = set()
    for match in _NAME.finditer(text):
        name = match.group()
        following = text[match.end() :].lstrip()
        if name.lower() in _KEYWORDS or following.startswith("("):
            continue
        names.add(name)
    return names
