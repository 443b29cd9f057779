"""One run of the job: plan it, bring up the server, coordinate, write the report, pick the exit code."""

from __future__ import annotations

import concurrent.futures as concurrent_futures
import os
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
from runner.clock import documents_moment, iso_time
from runner.config import RunnerConfig, given_secrets
from runner.errors import ChartError, UsageError
from runner.figures import KeyFigure
from runner.journal import Journal, read_journal
from runner.junit import check_junit_path
from runner.logs import set_run_id
from runner.metrics import open_fds
from runner.planning import MERCHANTS_FILE, Plan, write_merchants
from runner.redaction import install as install_secrets
from runner.request import JobInputs, check_dates, job_merchants
from runner.resume import Resumed, job_hash
from runner.run_folders import new_run_dir, point_latest, prune_runs
from runner.run_report import ReportInputs, log_closing_block, write_run_report
from runner.server_record import server_record
from runner.shards import Shard
from runner.signals import stop_on_signals
from runner.status import DeckFormat, ExitCode, PartialDecks, PdfEngine

if TYPE_CHECKING:
    from runner.render.supervisor import RenderFunction

MAX_TEMPLATE_BYTES = 50_000_000


@dataclass(frozen=True)
class WrittenReport:
    """A run's report as written, and the exit code it gives."""

    report_path: Path
    exit_code: ExitCode
    report: dict[str, Any]


def _deck_template(config: RunnerConfig, charts: tuple[ChartSpec, ...], figures: tuple[KeyFigure, ...],
                   ) -> bytes | None:
    """The user's PPTX template, checked against the pack before any work."""
    if not config.deck_template or (DeckFormat.PPTX not in config.deck_formats and not _libreoffice_pdf(config)):
        return None
    from runner.decks.powerpoint import check_template
    from runner.files import read_input

    path = Path(config.deck_template).expanduser()
    content = read_input(path, "deck template", MAX_TEMPLATE_BYTES)
    check_template(content, charts, str(path), figures)
    return content


def _libreoffice_pdf(config: RunnerConfig) -> bool:
    """PDF decks made by LibreOffice from the filled PPTX (made for it even when only the PDF is asked for)."""
    return config.pdf_engine == PdfEngine.LIBREOFFICE and DeckFormat.PDF in config.deck_formats


def _in_shard(token: str, shard: str | None) -> bool:
    return shard is None or Shard.parse(shard).holds(token)


def _parsed_time(text: Any, default: datetime) -> datetime:
    """A time the job file recorded (ISO-8601 UTC), or `default` where it holds none."""
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return default


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
def _removed_on_usage_error(run_dir: Path | None, undo: list[Callable[[], None]]) -> Iterator[None]:
    """A usage error found once the run folder exists (an ambiguous query tool, a bad merchant
    list) leaves nothing behind, like one found before: not the run folder, nor the output and
    cache folders this run made (while they hold nothing else)."""
    try:
        yield
    except UsageError:
        if run_dir is None:  # a resumed run's folder holds its first part: never removed
            raise
        shutil.rmtree(run_dir, ignore_errors=True)
        for step in undo:
            step()
        raise


def _rmdir(folder: Path) -> None:
    with suppress(OSError):
        folder.rmdir()  # only while empty


def _fixed_job(config: RunnerConfig, inputs: JobInputs, run_id: str, started_at: datetime) -> dict[str, Any]:
    """What a resumed run must keep: the job as resolved now, and the settings that shape its files."""
    from runner.resume import FIXED_SETTINGS, JOB_VERSION, charts_fingerprint, file_fingerprint

    return {"version": JOB_VERSION, "run_id": run_id, "started_at": iso_time(started_at),
            "start_date": inputs.start_date, "end_date": inputs.end_date, "dates_given": dict(inputs.dates_given),
            "pack": inputs.pack, "charts": [spec.id for spec in inputs.charts],
            "charts_sha256": charts_fingerprint(inputs.charts),
            "only": None if inputs.only is None else [list(pair) for pair in inputs.only],
            "reruns": inputs.reruns, "csv": inputs.write_csv, "shard": inputs.shard,
            "settings": {name: getattr(config, name) for name in FIXED_SETTINGS},
            "deck_template_sha256": file_fingerprint(config.deck_template)}


def execute(config: RunnerConfig, inputs: JobInputs, progress_live: bool = False,
            render: RenderFunction | None = None, resumed: Resumed | None = None) -> WrittenReport:
    """Run the whole job. A RunEndingError propagates with no report (a usage error, exit 2, before any
    work; the embedded server not starting; an unreachable Dask scheduler; a report that cannot be
    written); everything else ends in a report.
    `render` replaces the worker-side render function (the tests inject faults with it);
    `resumed`: the run folder to continue (--resume), its job already read (runner.resume)."""
    from runner.coordinator import Coordinator, RunPlan
    from runner.decks.book import DeckBook
    from runner.progress import ProgressReporter
    from runner.records import PdfConversion
    from runner.render.backends import render_backend
    from runner.resume import Carried, RunLock, remove_torn_writes, write_job
    from runner.retrieval.discovery import default_merchants
    from runner.retrieval.discovery import query_tool as find_query_tool
    from runner.retrieval.sessions import ServerTarget, SessionPool

    install_secrets(given_secrets(config))  # first: from here on no output may show a secret
    check_dates(inputs.start_date, inputs.end_date)
    if not config.output_dir.strip():  # Path("") is the working folder: runs would land among the user's files
        raise UsageError(f"output_dir {config.output_dir!r} is empty: name a folder (--output-dir, "
                         "SCALAPAY_OUTPUT_DIR or output_dir in the config file)")
    if config.junit_xml:
        check_junit_path(Path(config.junit_xml).expanduser())
    if config.retrieval_mode == "agent" and not config.anthropic_api_key:
        raise UsageError("--retrieval agent needs an API key: set ANTHROPIC_API_KEY (or anthropic_api_key "
                         "in the config file)")
    if _libreoffice_pdf(config):
        from runner.decks.libreoffice import check_libreoffice

        check_libreoffice()
    template = _deck_template(config, inputs.charts, inputs.figures)
    target = None
    if config.server_url or config.server_command:
        target = ServerTarget.from_settings(config.server_url, config.server_command, config.server_env,
                                            config.server_headers)
    elif config.server_env or config.server_headers:
        raise UsageError("--server-env and --server-header are for your own server: give --server-command "
                         "or --server-url")
    server = server_record(config.server_url, config.server_command, inputs.pack)  # for a rerun to compare
    claim_cache(config, create=False)  # an existing folder that is not the runner's cache: refused now
    lock = None
    if resumed is not None:
        lock = RunLock(resumed.run_dir).__enter__()  # before any work: a second process resuming it stops here
        if removed := remove_torn_writes(resumed.run_dir):
            logger.info("removed {} file(s) the run left half-written when it stopped", removed)
    try:
        backend = render_backend(config, render)  # a cluster is reached now: one that cannot be, and no work is done
    except BaseException:
        if lock is not None:
            lock.__exit__()
        raise
    output = Path(config.output_dir).expanduser()
    undo: list[Callable[[], None]] = [] if output.exists() else [partial(_rmdir, output)]  # taken back if empty
    started_at = datetime.now(UTC)
    if resumed is None:
        run_id, run_dir = new_run_dir(config.output_dir, inputs.reruns)
        removable: Path | None = run_dir
        lock = RunLock(run_dir).__enter__()  # a resume of this run while it still goes is refused
    else:
        run_id, run_dir, removable = resumed.job["run_id"], resumed.run_dir, None  # a resumed run is never removed
    try:
        with _removed_on_usage_error(removable, undo):
            if (cache := claim_cache(config)) is not None:  # made only now, once the output folder is good
                undo.insert(0, partial(unclaim, cache))
            job = resumed.job if resumed else _fixed_job(config, inputs, run_id, started_at)
            journal = Journal(run_dir, run_id, write_job(run_dir, job) if resumed is None else job_hash(job))
    except BaseException:
        backend.close()
        if lock is not None:
            lock.__exit__()
        raise
    # Before the server, sessions and pools (all must be closed by the end), and after the run's own
    # journal and lock (closed once the report is written, after this is counted again).
    fds_at_start = open_fds()
    set_run_id(run_id)
    backend.prestart()
    started = time.perf_counter()
    logger.info("{} {} → {}", "resuming run" if resumed else "run", run_id, run_dir)

    result = None
    merchants_file = run_dir / MERCHANTS_FILE
    merchants: tuple[str, ...] = inputs.merchants
    names = dict(inputs.merchant_names)  # token -> display name, where the job or the server gives one
    unreachable_reason: str | None = None
    stop = threading.Event()
    pools: list[Any] = []
    server_pid: int | None = None
    plan = Plan(run_dir, inputs.charts, inputs.start_date, inputs.end_date, config.batch_size,
                None if inputs.only is None else frozenset(inputs.only))
    if inputs.merchants_given and not merchants_file.exists():
        with _removed_on_usage_error(removable, undo):  # a bad line in a merchants file changed since it was read
            write_merchants(run_dir, job_merchants(inputs))
    journal_index = None
    if resumed is not None and merchants_file.exists():
        journal_index = read_journal(run_dir, *plan.counts)
        journal.resumed({"at": iso_time(started_at), "pid": os.getpid()})

    def request_stop() -> None:
        stop.set()
        for pool in pools:
            pool.cancel_all()

    # Signals only ask for a stop until the report is on disk: there is no moment where Ctrl-C
    # loses the report or leaves the server running.
    received: list[str] = []
    with ExitStack() as held:
        held.callback(journal.close)
        if lock is not None:
            held.callback(lock.__exit__)
        with _removed_on_usage_error(removable, undo), stop_on_signals(request_stop, received), \
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
                # A stop lets this answer arrive for a grace, so the report can name the charts.
                if not merchants_file.exists():
                    try:
                        found = default_merchants(pool, config, stop, inputs.merchants_sql)
                        merchants, query_tool = found.tokens, found.query_tool  # a merchants query found the tool
                        names.update(found.names)
                        logger.info("merchants (server's first {}): {}", len(merchants), found.describe())
                        write_merchants(run_dir, ((token, names.get(token, "")) for token in merchants
                                                  if _in_shard(token, inputs.shard)))
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
                if unreachable_reason is None and not stop.is_set() and merchants_file.exists():
                    plan = plan.with_query_tool(query_tool)
                    reporter = ProgressReporter(live=progress_live,
                                                interval_seconds=config.progress_interval_seconds)
                    if progress_live:
                        from runner.logs import setup_logging

                        setup_logging(config.log_format, config.verbose_logging, False, sink=reporter.log_sink)
                    decks = DeckBook([], config.deck_formats, template, started_at.date().isoformat(),
                                     inputs.figures, PartialDecks(config.partial_decks), author=config.deck_author,
                                     pdf=PdfConversion(PdfEngine(config.pdf_engine), config.pdf_timeout_seconds),
                                     made_at=documents_moment(started_at, os.environ).isoformat())
                    carried = None if journal_index is None else Carried(journal_index, journal_index.reader())
                    try:
                        coordinator = Coordinator(config, RunPlan(run_id, plan, journal, carried), pool,
                                                  with_cache(backend.supervisor(), config), reporter, stop, decks)
                        with reporter:
                            result = coordinator.run()
                    finally:
                        if carried is not None:
                            carried.reader.__exit__()
                logger.debug("run finished; the server and sessions are closing")

            def finish() -> tuple[Path, dict[str, Any]]:
                stopped_by = ", ".join(dict.fromkeys(received)) if stop.is_set() else None
                return write_run_report(
                    ReportInputs(config, run_id, run_dir, inputs, plan if merchants_file.exists() else None,
                                 started_at if resumed is None else _parsed_time(job.get("started_at"), started_at),
                                 (time.perf_counter() - started) * 1000, result, unreachable_reason, stopped_by),
                    extra={"server_pid": server_pid, "server": server.as_report()},
                    metrics={"render": backend.figures()}, fds_at_start=fds_at_start)

            path, report = finish()
            if stop.is_set() and report["run"]["status"] != "interrupted":
                path, report = finish()  # the stop came while the report was written: say so in it
        journal.end(report["run"]["status"])
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
