"""One run of the job: plan it, bring up the server, coordinate, write the report, pick the exit code."""

from __future__ import annotations

import concurrent.futures as concurrent_futures
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger

from runner.cache.folder import unclaim
from runner.cache.layer import claim_cache, render_cache, with_cache
from runner.charts import ChartSpec
from runner.config import RunnerConfig, given_secrets
from runner.errors import ChartError, UsageError
from runner.junit import check_junit_path, write_junit
from runner.logs import set_run_id
from runner.metrics import open_fds, peak_rss_mb
from runner.planning import check_run_size, plan_batches
from runner.redaction import install as install_secrets
from runner.report import (
    ReportWriteError,
    write_report,
)
from runner.request import JobInputs, check_dates
from runner.run_folders import new_run_dir, point_latest, prune_runs
from runner.run_report import build_report, junit_failed, log_closing_block
from runner.server_record import server_record
from runner.signals import stop_on_signals
from runner.status import DeckFormat, ExitCode, PartialDecks

if TYPE_CHECKING:
    from runner.render.supervisor import RenderFunction

MAX_TEMPLATE_BYTES = 50_000_000


@dataclass(frozen=True)
class WrittenReport:
    """A run's report as written, and the exit code it gives."""

    report_path: Path
    exit_code: ExitCode
    report: dict[str, Any]


def _deck_template(config: RunnerConfig, charts: tuple[ChartSpec, ...]) -> bytes | None:
    """The user's PPTX template, checked against the pack before any work."""
    if not config.deck_template or DeckFormat.PPTX not in config.deck_formats:
        return None
    from runner.decks.powerpoint import check_template
    from runner.files import read_input

    path = Path(config.deck_template).expanduser()
    content = read_input(path, "deck template", MAX_TEMPLATE_BYTES)
    check_template(content, charts, str(path))
    return content


@contextmanager
def _deadline(seconds: float | None, stop: Any, received: list[str]) -> Iterator[None]:
    """--max-run-seconds: when it passes, the run stops exactly as on SIGTERM, and says why."""
    if seconds is None:
        yield
        return

    def passed() -> None:
        received.append(f"its deadline (--max-run-seconds {seconds:g})")
        stop()

    timer = threading.Timer(seconds, passed)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@contextmanager
def _removed_on_usage_error(run_dir: Path, undo: list[Callable[[], None]]) -> Iterator[None]:
    """A usage error found once the run folder exists (an ambiguous query tool, a bad merchant
    list) leaves nothing behind, like one found before: not the run folder, nor the output and
    cache folders this run made (while they hold nothing else)."""
    try:
        yield
    except UsageError:
        shutil.rmtree(run_dir, ignore_errors=True)
        for step in undo:
            step()
        raise


def _rmdir(folder: Path) -> None:
    with suppress(OSError):
        folder.rmdir()  # only while empty


def execute(config: RunnerConfig, inputs: JobInputs, progress_live: bool = False,
            render: RenderFunction | None = None) -> WrittenReport:
    """Run the whole job. A RunEndingError propagates with no report (a usage error, exit 2, before any
    work; the embedded server not starting; an unreachable Dask scheduler; a report that cannot be
    written); everything else ends in a report.
    `render` replaces the worker-side render function (the tests inject faults with it)."""
    from runner.coordinator import Coordinator, RunPlan
    from runner.decks.book import DeckBook
    from runner.progress import ProgressReporter
    from runner.render.backends import render_backend
    from runner.retrieval.discovery import default_merchants
    from runner.retrieval.discovery import query_tool as find_query_tool
    from runner.retrieval.sessions import ServerTarget, SessionPool

    install_secrets(given_secrets(config))  # first: from here on no output may show a secret
    check_dates(inputs.start_date, inputs.end_date)
    if not config.output_dir.strip():  # Path("") is the working folder: runs would land among the user's files
        raise UsageError(f"output_dir {config.output_dir!r} is empty: name a folder (--output-dir, "
                         "SCALAPAY_OUTPUT_DIR or output_dir in the config file)")
    check_run_size(inputs.chart_count, len(inputs.merchants), len(inputs.charts))
    if config.junit_xml:
        check_junit_path(Path(config.junit_xml).expanduser())
    if config.retrieval_mode == "agent" and not config.anthropic_api_key:
        raise UsageError("--retrieval agent needs an API key: set ANTHROPIC_API_KEY (or anthropic_api_key "
                         "in the config file)")
    template = _deck_template(config, inputs.charts)
    target = None
    if config.server_url or config.server_command:
        target = ServerTarget.from_settings(config.server_url, config.server_command, config.server_env,
                                            config.server_headers)
    elif config.server_env or config.server_headers:
        raise UsageError("--server-env and --server-header are for your own server: give --server-command "
                         "or --server-url")
    server = server_record(config.server_url, config.server_command, inputs.pack)  # for a rerun to compare
    claim_cache(config, create=False)  # an existing folder that is not the runner's cache: refused now
    backend = render_backend(config, render)  # a cluster is reached now: one that cannot be, and no work is done
    fds_at_start = open_fds()  # before the server, sessions and pools: all must be closed by the end
    output = Path(config.output_dir).expanduser()
    undo: list[Callable[[], None]] = [] if output.exists() else [partial(_rmdir, output)]  # taken back if empty
    run_id, run_dir = new_run_dir(config.output_dir, inputs.reruns)
    try:
        with _removed_on_usage_error(run_dir, undo):
            if (cache := claim_cache(config)) is not None:  # made only now, once the output folder is good
                undo.insert(0, partial(unclaim, cache))
    except UsageError:
        backend.close()
        raise
    set_run_id(run_id)
    backend.prestart()
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    logger.info("run {} → {}", run_id, run_dir)

    result = None
    merchants: tuple[str, ...] = inputs.merchants
    names = dict(inputs.merchant_names)  # token -> display name, where the job or the server gives one
    unreachable_reason: str | None = None
    stop = threading.Event()
    pools: list[Any] = []
    server_pid: int | None = None

    def request_stop() -> None:
        stop.set()
        for pool in pools:
            pool.cancel_all()

    # Signals only ask for a stop until the report is on disk: there is no moment where Ctrl-C
    # loses the report or leaves the server running.
    received: list[str] = []
    with _removed_on_usage_error(run_dir, undo), stop_on_signals(request_stop, received), \
            _deadline(config.max_run_seconds, request_stop, received):
        with ExitStack() as stack:
            if target is None:
                from runner.demo.launch import embedded_server

                url, server_pid = stack.enter_context(
                    embedded_server(run_dir / "demo-server.log", inputs.demo_server_args))
                target = ServerTarget(url=url)
            logger.info("MCP server: {}", target.describe())
            errlog = stack.enter_context(open(run_dir / "server-stderr.log", "a", encoding="utf-8"))
            concurrent = config.enable_concurrent_data_retrieval
            pool = SessionPool(target, config.max_concurrent_batches if concurrent else 1,
                               open_timeout=config.tool_timeout_seconds, errlog=errlog,
                               failure_limit=config.server_failure_limit)
            stack.callback(pool.close)
            stack.callback(backend.close)
            query_tool = None
            if not merchants:  # a stop lets this answer arrive for a grace, so the report can name the charts
                try:
                    found = default_merchants(pool, config, stop, inputs.merchants_sql)
                    merchants, query_tool = found.tokens, found.query_tool  # a merchants query found the tool
                    names.update(found.names)
                    logger.info("merchants (server's first {}): {}", len(merchants), found.describe())
                except ChartError as exc:
                    unreachable_reason = exc.message
                    logger.error("cannot list merchants: {}", exc.message)
                except concurrent_futures.CancelledError:
                    logger.warning("interrupted before the merchant list arrived")
            pools.append(pool)  # from here on, a stop cancels the calls under way at once
            query_tool = query_tool if config.retrieval_mode == "direct" else None  # agent mode writes its own
            if query_tool is None and unreachable_reason is None and not stop.is_set() \
                    and config.retrieval_mode == "direct" and any(spec.sql for spec in inputs.charts):
                try:
                    query_tool = find_query_tool(pool, config, stop)
                except ChartError as exc:
                    unreachable_reason = exc.message
                    logger.error("cannot list the server's tools: {}", exc.message)
                except concurrent_futures.CancelledError:
                    logger.warning("interrupted before the server's tools were listed")
            if unreachable_reason is None and not stop.is_set():
                batches = plan_batches(list(merchants), inputs.charts, inputs.start_date, inputs.end_date,
                                       run_dir, config.batch_size, query_tool, inputs.only)
                reporter = ProgressReporter(live=progress_live, interval_seconds=config.progress_interval_seconds)
                if progress_live:
                    from runner.logs import setup_logging

                    setup_logging(config.log_format, config.verbose_logging, False, sink=reporter.log_sink)
                decks = DeckBook([job for batch in batches for job in batch.jobs], config.deck_formats, template,
                                 started_at.date().isoformat(), inputs.figures, PartialDecks(config.partial_decks),
                                 names=names)
                coordinator = Coordinator(config, RunPlan(run_id, batches), pool,
                                          with_cache(backend.supervisor(), config), reporter,
                                          stop, decks)
                with reporter:
                    result = coordinator.run()
            logger.debug("run finished; the server and sessions are closing")

        def finish() -> tuple[Path, dict[str, Any]]:
            stopped_by = ", ".join(dict.fromkeys(received)) if stop.is_set() else None
            report = build_report(config, run_id, run_dir, inputs, merchants, started_at, datetime.now(UTC),
                                  (time.perf_counter() - started) * 1000, result, unreachable_reason, stopped_by,
                                  names)
            report["run"].update(server_pid=server_pid, server=server.as_report(), junit_xml=None)
            report["metrics"]["render"].update(backend.figures())
            report["metrics"]["process"] = {"coordinator_peak_rss_mb": peak_rss_mb(),
                                            "open_fds_start": fds_at_start, "open_fds_end": open_fds()}
            if config.junit_xml:  # before the report: a report on disk means everything was written
                try:
                    junit = Path(config.junit_xml).expanduser().absolute()
                    write_junit(junit, report)
                    report["run"]["junit_xml"] = str(junit)  # where a merge finds it again
                except ReportWriteError as exc:
                    junit_failed(report, str(exc))
            return write_report(run_dir, report, inputs.write_csv), report

        path, report = finish()
        if stop.is_set() and report["run"]["status"] != "interrupted":
            path, report = finish()  # the stop came while the report was written: say so in it
    if config.cache:
        render_cache(config).trim()
    if inputs.reruns is None:  # `latest` names the newest night; a rerun is part of its night, not a new one
        point_latest(run_dir)
    if config.keep_runs is not None:
        prune_runs(run_dir.parent, config.keep_runs, run_dir)
    if received:
        logger.warning("stopped by {}", ", ".join(dict.fromkeys(received)))
    log_closing_block(report)
    return WrittenReport(path, ExitCode(report["run"]["exit_code"]), report)
