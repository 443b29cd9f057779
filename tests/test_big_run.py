"""A run over 20,000 charts, through the CLI (issue 26: no run-size cap; the coordinator's memory
is bounded by what is in flight, not by the run).

The pipeline runs whole (the demo MCP server over HTTP, retrieval, the render pool, the journal, the
report written row by row), with the tests' no-op render (every chart a 1x1 PNG) so that the run
costs tool calls, not matplotlib. The runner used to refuse a run of more than 20,000 charts, and
held about 7 KB a chart: 272.5 MB at 19,999 charts.
"""

from __future__ import annotations

from collections import Counter

import pytest

from runner.charts import BUILTIN_PACK
from runner.demo.data import DORMANT_INDEX, build_database
from runner.demo.launch import embedded_server
from runner.demo.server import Warehouse
from tests.helpers import CHART_IDS, check_report, run_cli

# Alone in its group: the run keeps both CPUs busy for minutes (tests/conftest.py hands groups out first).
pytestmark = [pytest.mark.xdist_group("big_run"), pytest.mark.timeout(900)]

OLD_CAP = 20_000  # charts a run could hold before
SERVER_MERCHANTS = 2_900  # less the dormant one: 2,899 merchants x 7 charts = 20,293 charts
# The demo data's order volume: 2,900 merchants build in seconds instead of two minutes, and every
# merchant but the dormant one still has data for every chart in the default window.
SCALE = "0.01"
# Measured on 2 CPUs: 122 MB at 700 charts, 130 MB at 7,000 and at 20,293, 148 MB at 200,039 (scripts/bench.py
# --memory-slope): mostly the imports and the in-flight window. The old coordinator held 272.5 MB at 19,999.
MAX_COORDINATOR_RSS_MB = 200
# Under load, now and then several of the run's MCP sessions may end at one instant (httpx ReadError). A
# lost session counts once towards the failure limit, however many calls it had in flight, but three lost
# with no answer between would still reach the default limit of 3 and fail every chart left. A limit above
# the run's 8 sessions retries their calls on new sessions instead: this test is about the run's size, not
# about a server that drops connections.
SERVER_FAILURE_LIMIT = "100"


def test_a_run_over_20000_charts_completes_in_bounded_memory(tmp_path):
    server_args = ["--merchants", str(SERVER_MERCHANTS), "--scale", SCALE, "--latency-ms", "0"]
    # The server's merchants, from the same seeded data it builds (its list_merchants would list the same).
    listed = Warehouse(build_database(float(SCALE), SERVER_MERCHANTS)).merchants()
    merchants = [merchant["token"] for index, merchant in enumerate(listed) if index != DORMANT_INDEX]
    assert len(merchants) * len(BUILTIN_PACK) > OLD_CAP
    merchants_file = tmp_path / "merchants.txt"
    merchants_file.write_text("\n".join(merchants) + "\n")
    with embedded_server(tmp_path / "server.log", server_args) as (url, _pid):
        result = run_cli(["run", "--server-url", url, "--merchants-file", str(merchants_file), "--deck", "none",
                          "--no-cache", "--max-concurrent-batches", "8", "--batch-size", "7", "--quiet",
                          "--server-failure-limit", SERVER_FAILURE_LIMIT], tmp_path, render_faults="noop:*",
                         timeout=840)

    assert result.returncode == 0, result.stderr[-3000:]
    report = check_report(result, merchants)  # schema-valid, every chart listed once, no leftovers
    assert Counter(chart["status"] for chart in report["charts"]) == {"ok": len(merchants) * len(CHART_IDS)}
    assert report["run"]["status"] == "ok"
    assert report["run"]["charts_ok"] == report["run"]["charts_total"] == len(merchants) * len(CHART_IDS)
    assert report["metrics"]["retrieval"]["tool_calls"] == len(merchants) * len(CHART_IDS)
    assert report["metrics"]["process"]["coordinator_peak_rss_mb"] < MAX_COORDINATOR_RSS_MB
