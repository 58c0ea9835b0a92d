"""deploy/: alert rules and their promtool unit tests, the scrape config, the Grafana dashboard."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.promql import (
    ALERTS,
    ALERTS_TEST,
    DASHBOARD,
    PROMETHEUS_CONFIG,
    check_expressions,
    dashboard_queries,
    grafana_to_promql,
    grouping_labels,
    label_names,
    metric_names,
    rule_queries,
)
from tests.servers import require_binary

#: The alerts issue 14 asks for, by what they watch.
REQUIRED_ALERTS = {
    "SwarmAgentDown",  # agent down
    "SwarmRoleNoHealthyReplica",  # role with no healthy replica
    "SwarmQueueAgeOverSLO",  # queue age over SLO
    "SwarmDeadLetterRate",  # dead-letter rate
    "SwarmTaskErrorRatio",  # error ratio
    "SwarmLeaderFlapping",  # leader flapping
    "SwarmBackgroundLoopRestarts",  # background-loop restarts
    "SwarmRedisLatencyHigh",  # Redis latency
}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_binary("promtool")


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules(promtool: str) -> None:
    out = run(promtool, "check", "rules", str(ALERTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in out.stdout


def test_promtool_unit_tests_of_the_rules_pass(promtool: str) -> None:
    out = run(promtool, "test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_checks_the_example_scrape_config(promtool: str) -> None:
    out = run(promtool, "check", "config", PROMETHEUS_CONFIG.name, cwd=PROMETHEUS_CONFIG.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = [j["job_name"] for j in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]]
    # SwarmAgentDown selects up{job=~"queenswarm.*"}.
    assert jobs and all(j.startswith("queenswarm") for j in jobs)


def test_every_required_alert_is_defined_with_severity_and_annotations() -> None:
    rules = alerts()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        for key in ("summary", "description"):
            assert rule["annotations"].get(key, "").strip(), f"{rule['alert']}: no {key}"


def _unit_tests_with(
    promtool: str, tmp_path: Path, rules: list[dict[str, Any]], alert: str
) -> str:
    """Run ``alert``'s unit tests against ``rules``; return promtool's output if they fail."""
    doc = yaml.safe_load(ALERTS.read_text())
    doc["groups"][0]["rules"] = rules
    (tmp_path / ALERTS.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    tests = yaml.safe_load(ALERTS_TEST.read_text())
    # Only the test groups of this alert: promtool evaluates every group of a file.
    tests["tests"] = [
        t for t in tests["tests"] if any(a["alertname"] == alert for a in t["alert_rule_test"])
    ]
    assert tests["tests"], f"no unit test of {alert}"
    (tmp_path / ALERTS_TEST.name).write_text(yaml.safe_dump(tests, sort_keys=False))
    out = run(promtool, "test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    return out.stdout + out.stderr if out.returncode else ""


def test_the_unit_tests_of_each_alert_see_it_fire_and_stay_quiet(
    promtool: str, tmp_path: Path
) -> None:
    """Each alert's tests fail when it never fires, and when it always fires.

    Removing an alert proves a test expects it to fire; making it fire for
    everything (its expression ``or`` a constant) proves a test expects it
    to stay quiet somewhere.
    """
    assert len(yaml.safe_load(ALERTS.read_text())["groups"]) == 1
    rules = alerts()
    cases: list[tuple[str, str, list[dict[str, Any]]]] = []
    for rule in rules:
        name = rule["alert"]
        others = [r for r in rules if r is not rule]
        noisy = {**rule, "expr": f"({rule['expr']}) or vector(1)"}
        cases.append((name, "pass", rules))
        cases.append((name, "fire", others))
        cases.append((name, "stay quiet", [*others, noisy]))

    def check(i: int) -> str | None:
        name, expect, variant = cases[i]
        where = tmp_path / str(i)
        where.mkdir()
        failed = _unit_tests_with(promtool, where, variant, name)
        if expect == "pass":
            return f"{name}: its unit tests fail:\n{failed}" if failed else None
        return None if name in failed else f"no unit test expects {name} to {expect}"

    # Thirty promtool runs, mostly start-up: a few at a time.
    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = [p for p in pool.map(check, range(len(cases))) if p]
    assert not problems, "\n".join(problems)


# -- the dashboard ------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_the_dashboard_queries_a_prometheus_datasource_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ds = {"type": "prometheus", "uid": "${datasource}"}
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == ds, var["name"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"] == ds, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == ds, panel["title"]


def test_dashboard_panels_have_unique_ids_and_fit_the_grid(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, p["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"panel {p['title']!r} overlaps another"
                cells.add((x, y))


def test_the_dashboard_covers_the_operators_metrics(dashboard: dict[str, Any]) -> None:
    used = set().union(*(metric_names(q) for _, q in dashboard_queries(dashboard)))
    for name in (
        "swarm_tasks_submitted_total",
        "swarm_tasks_started_total",
        "swarm_tasks_finished_total",
        "swarm_task_handler_duration_seconds_bucket",
        "swarm_task_latency_seconds_bucket",
        "swarm_queue_depth",
        "swarm_queue_oldest_age_seconds",
        "swarm_agent_inflight_tasks",
        "swarm_role_replicas",
        "swarm_dead_letters",
        "swarm_messages_rejected_total",
        "swarm_task_retries_total",
        "swarm_redis_roundtrip_duration_seconds_bucket",
        "swarm_memory_operation_duration_seconds_count",
        "swarm_memory_operation_duration_seconds_bucket",
        "swarm_background_task_restarts_total",
        "swarm_leader_epoch",
        "swarm_leader_changes_total",
        "swarm_llm_tokens_total",
        "swarm_llm_cost_usd_total",
    ):
        assert name in used, name
    # Latency panels are quantiles from the histograms' buckets.
    quantiles = [q for _, q in dashboard_queries(dashboard) if "histogram_quantile" in q]
    assert all("_bucket" in q and "le)" in q for q in quantiles)
    assert {m for q in quantiles for m in metric_names(q)} >= {
        "swarm_task_handler_duration_seconds_bucket",
        "swarm_task_latency_seconds_bucket",
        "swarm_redis_roundtrip_duration_seconds_bucket",
        "swarm_memory_operation_duration_seconds_bucket",
    }


def test_promtool_parses_every_dashboard_query(
    promtool: str, dashboard: dict[str, Any], tmp_path: Path
) -> None:
    queries = dashboard_queries(dashboard)
    assert all("$" not in grafana_to_promql(q) for _, q in queries)
    check_expressions(promtool, queries, tmp_path)


def test_check_expressions_rejects_bad_promql(promtool: str, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="promtool rejects"):
        check_expressions(promtool, [("bad", "sum by (role (rate(x[5m]))")], tmp_path)


# -- the name extraction the scrape test relies on -------------------------------------


def test_metric_names_skip_functions_keywords_labels_and_durations() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{role=~"x|y", s!="b c"}[5m])))'
        ' > 0.05 and on (role) b_total offset 1h unless ignoring (x) c'
        ' or max without (agent) (d:rec) * 3600 or vector(0) > bool 1e3'
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d:rec"}
    assert label_names(expr) == {"a_bucket": {"role", "s"}}
    assert grouping_labels(expr) == {"job", "le", "role", "x", "agent"}
    assert metric_names('{__name__="x"}') == set()
    assert metric_names("up == 0") == {"up"}


def test_every_rule_and_panel_query_names_a_metric() -> None:
    for where, expr in [*rule_queries(), *dashboard_queries()]:
        assert metric_names(expr), f"{where}: no metric found in {expr!r}"
