"""What the dashboard and the alert rules query: their PromQL, and the metric names in it.

No PromQL parser is needed for names: after string literals, label matchers,
range selectors and grouping clauses are removed, every identifier that is not
a keyword and not followed by ``(`` (a function or an aggregation) is a metric
name. promtool checks that the same expressions parse (``check_expressions``).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "ALERTS",
    "ALERTS_TEST",
    "DASHBOARD",
    "PROMETHEUS_CONFIG",
    "check_expressions",
    "dashboard_queries",
    "exposed_series",
    "grafana_to_promql",
    "grouping_labels",
    "input_series",
    "label_names",
    "metric_names",
    "render",
    "rule_queries",
]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "queenswarm.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
     "group_left", "group_right", "inf", "nan", "atan2"}
)
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)?\s*\{([^{}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")

#: Grafana's built-in variables, as a query would be sent with them filled in.
_GRAFANA_BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def grafana_to_promql(expr: str) -> str:
    """``expr`` as Grafana sends it with every variable selecting all values."""
    for name, value in _GRAFANA_BUILTINS.items():
        expr = expr.replace(name, value)
    # A multi-value variable with "All" selected becomes its allValue, ".*".
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    bare = _STRING.sub('""', expr)
    bare = _MATCHERS.sub(" ", bare)
    bare = _RANGE.sub(" ", bare)
    bare = _GROUPING.sub(" ", bare)
    names = set()
    for m in _IDENT.finditer(bare):
        name, call = m.group(1), m.group(2)
        if call or name in _KEYWORDS:
            continue
        names.add(name)
    return names


def label_names(expr: str) -> dict[str, set[str]]:
    """Label names each metric of ``expr`` is matched on (``{...}``), by metric name."""
    bare = _STRING.sub('""', expr)
    out: dict[str, set[str]] = {}
    for m in _SELECTOR.finditer(bare):
        if m.group(1):
            out.setdefault(m.group(1), set()).update(_MATCHER_LABEL.findall(m.group(2)))
    return out


def grouping_labels(expr: str) -> set[str]:
    """Label names of the expression's ``by``/``without``/``on``/``ignoring`` clauses."""
    bare = _STRING.sub('""', expr)
    return {
        label.strip()
        for group in _GROUPING.findall(bare)
        for label in group.split(",")
        if label.strip()
    }


def _panels(panels: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries(dashboard: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """``(where, promql)`` of every panel target and query variable of the dashboard."""
    if dashboard is None:
        dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
        assert m, f"variable {var['name']}: not a label_values(metric, label) query: {query}"
        out.append((f"variable {var['name']!r}", m.group(1)))
    return out


def rule_queries(path: Path = ALERTS) -> list[tuple[str, str]]:
    """``(alert or record name, promql)`` of every rule in a rules file."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in groups
        for rule in group["rules"]
    ]


def exposed_series(text: str) -> dict[str, set[str]]:
    """Series names a Prometheus server would store from a scrape, with the labels seen.

    A family declared with no sample yet (a labelled counter nothing has
    incremented) still names its series: counters ``_total``, histograms
    ``_bucket``/``_sum``/``_count``.
    """
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in suffixes.get(family.type, ("",)):
            out.setdefault(family.name + suffix, set())
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def check_expressions(promtool: str, queries: list[tuple[str, str]], tmp: Path) -> None:
    """Fail unless promtool parses every query (as recording rules of a scratch file)."""
    rules = {
        "groups": [{
            "name": "parse-only",
            "rules": [
                {"record": f"parse_only:{i}", "expr": grafana_to_promql(expr)}
                for i, (_, expr) in enumerate(queries)
            ],
        }]
    }
    path = tmp / "queries.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    run = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, f"promtool rejects a dashboard query:\n{run.stdout}{run.stderr}"


def input_series(
    up: dict[str, tuple[str, str]], down: dict[str, str] | None = None, minutes: int = 15
) -> list[dict[str, str]]:
    """promtool ``input_series`` holding real scrapes steady for ``minutes``.

    Args:
        up: ``{instance: (job, /metrics text)}``: targets that answer (``up``
            1), their ``swarm_*`` samples labelled as Prometheus labels them.
        down: ``{instance: job}``: targets that no longer answer (``up`` 0).
    """
    out = []
    for instance, (job, text) in up.items():
        target = {"job": job, "instance": instance}
        out.append({"series": _series("up", target), "values": f"1x{minutes}"})
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name.startswith("swarm_"):
                    value = format(s.value, ".9f").rstrip("0").rstrip(".")
                    out.append({
                        "series": _series(s.name, {**s.labels, **target}),
                        "values": f"{value}x{minutes}",
                    })
    for instance, job in (down or {}).items():
        target = {"job": job, "instance": instance}
        out.append({"series": _series("up", target), "values": f"0x{minutes}"})
    return out


def _series(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in labels.items()) + "}"


def render(template: str, labels: dict[str, str]) -> str:
    """An alert annotation as Prometheus renders it, for templates using only ``$labels``."""
    out = re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], template)
    assert "{{" not in out, f"template needs more than $labels: {template}"
    return out
