"""GET /: jobs by state, task and queue, the last hour's charts, the oldest pending job."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from errands.dashboard._filters import LIVE_STATES
from errands.dashboard._svg import Bar, bar_chart

if TYPE_CHECKING:
    from errands.dashboard._app import Dashboard

BUCKET = timedelta(minutes=5)
WINDOW = timedelta(hours=1)

COUNTS = ("SELECT state, task_identifier, queue_name, jobs, estimated "
          "FROM errands.dashboard_counts(%s)")
CHART = ("SELECT bucket_start, completed, cancelled, failed "
         "FROM errands.dashboard_chart(now() - %s::interval, %s::interval)")
# Queue wait (run_at -> start) and run time (start -> completion) from history.
DURATIONS = ("SELECT bucket_start, wait_p50, wait_max, run_p50, run_max, jobs "
             "FROM errands.dashboard_durations(now() - %s::interval, %s::interval)")
# The oldest due job nobody has taken: walks the primary key from the oldest id.
OLDEST = ("SELECT id, task_identifier, queue_name, run_at, now() - run_at AS waited "
          "FROM errands.jobs WHERE state = 'pending' ORDER BY id LIMIT 1")
HISTORY_KEPT = "SELECT EXISTS (SELECT 1 FROM errands.finished_jobs) AS kept"


def _group(rows: list[dict[str, Any]], key: str) -> list[tuple[str, dict[str, int]]]:
    table: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(LIVE_STATES, 0))
    for r in rows:
        table[r[key] or ""][r["state"]] += r["jobs"]
    return sorted(table.items(), key=lambda kv: -sum(kv[1].values()))


def routes(dash: Dashboard) -> list[BaseRoute]:
    async def overview(request: Request) -> Response:
        counts = await dash.db.rows(COUNTS, [dash.options.exact_count_below])
        by_state = dict.fromkeys(LIVE_STATES, 0)
        for r in counts:
            by_state[r["state"]] += r["jobs"]
        estimated = any(r["estimated"] for r in counts)
        # Running, waiting and failed are exact even on a big table.
        estimated_states = {r["state"] for r in counts if r["estimated"]}
        chart = await dash.db.rows(CHART, [WINDOW, BUCKET])
        durations = await dash.db.rows(DURATIONS, [WINDOW, BUCKET])
        oldest = await dash.db.row(OLDEST)
        kept = await dash.db.row(HISTORY_KEPT)

        def label(r: dict[str, Any]) -> str:
            return str(r["bucket_start"].strftime("%H:%M"))

        charts = {
            "throughput": bar_chart("chart-throughput", [
                Bar(label(r), r["completed"], f"{label(r)}: {r['completed']} completed")
                for r in chart]),
            "failures": bar_chart("chart-failures", [
                Bar(label(r), r["failed"] + r["cancelled"],
                    f"{label(r)}: {r['failed']} failed tries, {r['cancelled']} cancelled")
                for r in chart]),
            "wait": bar_chart("chart-wait", [
                Bar(label(r), r["wait_p50"] or 0,
                    f"{label(r)}: median queue wait {r['wait_p50'] or 0:.2f} s "
                    f"(max {r['wait_max'] or 0:.2f} s) of {r['jobs']} completed jobs")
                for r in durations], unit=" s"),
            "run": bar_chart("chart-run", [
                Bar(label(r), r["run_p50"] or 0,
                    f"{label(r)}: median run time {r['run_p50'] or 0:.2f} s "
                    f"(max {r['run_max'] or 0:.2f} s) of {r['jobs']} completed jobs")
                for r in durations], unit=" s"),
        }
        refresh = dash.options.refresh_seconds
        if request.query_params.get("refresh") is not None:
            value = request.query_params["refresh"]
            refresh = int(value) if value.isdigit() else refresh
        return dash.render.page(
            request, "overview.html",
            by_state=by_state, estimated=estimated, estimated_states=estimated_states,
            by_task=_group(counts, "task_identifier"), by_queue=_group(counts, "queue_name"),
            states=LIVE_STATES, charts=charts, oldest=oldest,
            history_kept=bool(kept and kept["kept"]), refresh=refresh,
        )

    return [Route("/", overview, methods=["GET"])]
