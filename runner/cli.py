"""The command line: `python -m runner [run|config|charts|merge-reports|demo-server|demo-data]`.

Kept light on purpose: only click and the config module load for `--help` and `config`;
matplotlib, mcp and anthropic are imported when a run or the server needs them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from runner import __version__, signals
from runner.config import CONFIG_FILE_ENV, RunnerConfig, load_config, setting, settings
from runner.errors import RunEndingError, UsageError
from runner.settings import JOB_KEYS, ValueKind
from runner.status import ExitCode

if TYPE_CHECKING:
    from runner.render.supervisor import RenderFunction
    from runner.request import JobRequest
_LOG_FORMAT = "log_format"  # the key, in click's context, of the log format an error line is written in


class DefaultToRun(click.Group):
    """`python -m runner [run options]` means `python -m runner run [run options]`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h", "--version")):
            args = ["run", *args]
        if args[0] != "run":
            signals.release()  # only a run turns a signal into a report
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """The one place an error that ends a run (errors.RunEndingError: a usage error, a report that
        cannot be written, a server or cluster that cannot be reached) becomes its one line and its exit
        code, without a traceback, whichever command raised it."""
        try:
            return super().invoke(ctx)
        except RunEndingError as exc:
            _error_line(str(exc), ctx.meta.get(_LOG_FORMAT))
            sys.exit(exc.exit_code)


def _option(names: list[str], dest: str, value_type: type, help_text: str, metavar: str | None = None,
            negatable: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """A flag whose value stays None when it is not given (the file or the environment may give it):
    bool is a switch (--x/--no-x when negatable), tuple a repeatable flag."""
    if value_type is bool:
        if negatable:
            names = [f"{names[0]}/--no-{names[0].removeprefix('--')}", *names[1:]]
        return click.option(*names, dest, is_flag=True, default=None, help=help_text)
    if value_type is tuple:
        return click.option(*names, dest, multiple=True, metavar=metavar, help=help_text)
    return click.option(*names, dest, default=None, metavar=metavar, help=help_text)


def setting_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One CLI flag per RunnerConfig setting (config.settings()), named after it; unset flags stay None."""
    for s in reversed(settings()):
        metavar = "ITEM" if s.kind is ValueKind.LIST else s.kind.value.upper()
        command = _option([s.flag, *s.aliases], s.name, s.python_type, f"{s.help} [env {s.env}; default {s.default}]",
                          metavar, negatable=True)(command)
    return click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                        help=f"TOML file of settings and the job (below env vars and flags) [env {CONFIG_FILE_ENV}]."
                        )(command)


def _config_file(options: dict[str, Any]) -> str | None:
    """--config, else the file SCALAPAY_CONFIG names."""
    return options.pop("config_file", None) or os.environ.get(CONFIG_FILE_ENV) or None


def job_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """One `run` flag per job key that has one (settings.JOB_KEYS), its value under the key's name."""
    for key in reversed(JOB_KEYS):
        if key.flag is not None:
            command = _option([key.flag], key.name, key.python_type, key.help, key.metavar)(command)
    return command


def _given(value: Any) -> Any:
    """A flag's value, None where it was not given (a repeatable flag not given is ())."""
    return None if value == () else value


def _config_from(options: dict[str, Any], config_file: str | None) -> RunnerConfig:
    return load_config(cli={s.name: _given(options.pop(s.name, None)) for s in settings()}, config_file=config_file)


def _error_line(message: str, log_format: str | None) -> None:
    """One line: plain, or a JSON object when the logs are JSON (as asked by flag or
    environment, even if the rest of the settings could not be read)."""
    if (log_format or os.environ.get(setting("log_format").env) or "").strip().lower() == "json":
        from datetime import UTC, datetime

        from runner.clock import iso_time
        from runner.logs import json_line

        click.echo(json_line({"time": iso_time(datetime.now(UTC)), "level": "ERROR", "message": f"error: {message}",
                              "run_id": None}), err=True)
    else:
        click.echo(f"error: {message}", err=True)


@click.group(cls=DefaultToRun, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runner")
def cli() -> None:
    """Build the charts of merchant business reviews from an MCP server.

    With no command, runs the default job: the embedded demo server, its first three
    merchants, the seven built-in charts.
    """


@cli.command("run")
@job_options
@click.option("--rerun-failed", "rerun_failed", default=None, metavar="REPORT",
              help="Run only the failed and cancelled charts of this report.json, with its dates and pack.")
@click.option("--merge", is_flag=True, help="With --rerun-failed: fold the outcome into the original run's folder.")
@click.option("--rerun-server-anyway", "server_anyway", is_flag=True,
              help="With --rerun-failed: rerun against another server than the run's (or a report that does "
                   "not record one).")
@click.option("--resume", "resume", is_flag=False, flag_value="", default=None, metavar="[RUN_DIR]",
              help="Continue a run that was killed or stopped (alone: the newest unfinished run in the output "
                   "folder); its job comes from its folder.")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on stderr.")
@click.option("--demo-server-arg", "demo_server_args", multiple=True, hidden=True,
              help="Extra flag for the embedded demo server (tests use it for latency and faults).")
@setting_options
@click.pass_obj
def run_command(seams: RunSeams | None, rerun_failed: str | None, merge: bool, server_anyway: bool,
                resume: str | None, quiet: bool, demo_server_args: tuple[str, ...], **options: Any) -> None:
    """Retrieve, render and report (the default command)."""
    from dataclasses import replace
    from datetime import date

    from runner.config import read_config_file
    from runner.logs import setup_logging
    from runner.progress import stderr_is_terminal
    from runner.request import JobRequest, job_inputs, request_from_file
    from runner.run import execute

    meta = click.get_current_context().meta
    meta[_LOG_FORMAT] = options.get("log_format")  # as the flag gives it, until the settings are read
    flags = JobRequest(**{key.name: _given(options.pop(key.name)) for key in JOB_KEYS if key.flag is not None})
    try:
        config_file = _config_file(options)
        config = _config_from(options, config_file)
        meta[_LOG_FORMAT] = config.log_format
        setup_logging(config.log_format, config.verbose_logging, quiet)
        if rerun_failed or merge or server_anyway:
            outcome = _rerun(config, flags, rerun_failed, (merge, server_anyway), demo_server_args, quiet, seams)
            signals.ignore()
            click.echo(str(outcome.report_path))
            sys.exit(outcome.exit_code)
        if resume is not None:
            outcome = _resume(config, flags, resume, demo_server_args, quiet, seams)
            signals.ignore()
            click.echo(str(outcome.report_path))
            sys.exit(outcome.exit_code)
        request = flags
        if config_file:
            in_file = request_from_file(read_config_file(Path(config_file)), Path(config_file))
            if flags.merchants or flags.merchants_file:  # merchants named on the command line replace the file's
                in_file = replace(in_file, merchants=None, merchants_file=None)
            request = flags.over(in_file)
        inputs = job_inputs(request, date.today(), demo_server_args)
        live = stderr_is_terminal() and not quiet and config.log_format == "human"
        outcome = execute(config, inputs, progress_live=live, render=seams.render if seams else None)
        signals.ignore()
        click.echo(str(outcome.report_path))
    except RunEndingError:
        raise  # one line and its code, at the one boundary (DefaultToRun.invoke)
    except KeyboardInterrupt:
        # Only outside the run itself: while it runs, a signal asks it to stop and report.
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except Exception:
        from loguru import logger

        logger.exception("internal error")
        sys.exit(ExitCode.INTERNAL)
    sys.exit(outcome.exit_code)


def _rerun(config: RunnerConfig, flags: JobRequest, report: str | None, how: tuple[bool, bool],
           demo_server_args: tuple[str, ...], quiet: bool, seams: RunSeams | None) -> Any:
    """--rerun-failed [--merge] [--rerun-server-anyway]: the job comes from the report, never from
    flags or a job file; the settings (the server, its credentials) from flags, environment and
    the job file as for any run, and the server must be the run's."""
    from dataclasses import replace

    from runner.merge import finish
    from runner.progress import stderr_is_terminal
    from runner.rerun import check_server, merge_target, read_rerun, rerun_inputs
    from runner.run import WrittenReport, execute
    from runner.status import ExitCode

    merge, server_anyway = how
    if not report:
        raise UsageError(f"{'--merge' if merge else '--rerun-server-anyway'} goes with --rerun-failed REPORT")
    given = [key.flag for key in JOB_KEYS if getattr(flags, key.name) is not None]
    if given:
        raise UsageError(f"--rerun-failed takes the job from the report; drop {given[0]}")
    rerun = read_rerun(report)
    with rerun.file:  # kept open: the merge reads the report that was checked, a row at a time
        if not rerun.pairs:
            click.echo(f"nothing to rerun: no chart of {rerun.report_path} failed", err=True)
            return WrittenReport(rerun.report_path, ExitCode(rerun.head["run"]["exit_code"]), rerun.head)
        check_server(rerun, config.server_url, config.server_command, server_anyway)  # before any work
        target = merge_target(rerun, config.deck_template, config.junit_xml) if merge else None
        keep_runs = config.keep_runs
        # A merchant's deck needs all its charts: --merge rebuilds them. Pruning waits for the merge,
        # and the JUnit file gets the merged state, never the rerun's own few cases.
        config = replace(config, deck="none", keep_runs=None, junit_xml=None if merge else config.junit_xml)
        live = stderr_is_terminal() and not quiet and config.log_format == "human"
        outcome = execute(config, rerun_inputs(rerun, demo_server_args), progress_live=live,
                          render=seams.render if seams else None)
        return finish(rerun, outcome, target, keep_runs)


def _resume(config: RunnerConfig, flags: JobRequest, resume: str, demo_server_args: tuple[str, ...], quiet: bool,
            seams: RunSeams | None) -> Any:
    """--resume [RUN_DIR]: the job from the run's folder, never from flags or a job file."""
    from runner.progress import stderr_is_terminal
    from runner.resume import FINISHED, journal_end, read_job, resumable_run, resumed_job
    from runner.run import WrittenReport, execute
    from runner.status import ExitCode

    given = [key.flag for key in JOB_KEYS if getattr(flags, key.name) is not None]
    if given:
        raise UsageError(f"--resume takes the job from the run's folder; drop {given[0]}")
    run_dir = Path(resume).expanduser().absolute() if resume else resumable_run(config.output_dir)
    if run_dir is None:
        click.echo(f"nothing to resume: every run in {config.output_dir} has finished", err=True)
        sys.exit(ExitCode.OK)
    read_job(run_dir)  # a folder that is not a run: one line, exit 2
    if (status := journal_end(run_dir)) in FINISHED:
        click.echo(f"run {run_dir.name} already finished ({status}): nothing to resume", err=True)
        return WrittenReport(run_dir / "report.json", ExitCode.OK, {})
    config, inputs, resumed = resumed_job(run_dir, config, demo_server_args)
    live = stderr_is_terminal() and not quiet and config.log_format == "human"
    return execute(config, inputs, progress_live=live, render=seams.render if seams else None, resumed=resumed)


@cli.command("config")
@setting_options
def config_command(**options: Any) -> None:
    """Print the effective settings and where each came from."""
    config = _config_from(options, _config_file(options))
    rows = config.effective()
    width = max(len(name) for name in rows)
    for name, entry in rows.items():
        click.echo(f"{name:<{width}}  {entry['value']!s:<20}  {entry['source']}")


@cli.command("charts")
@click.option("--pack", default=None, type=str, help="A built-in pack's name or a chart pack file.")
def charts_command(pack: str | None) -> None:
    """List the charts of the pack."""
    from runner.charts import BUILTIN_PACK, load_pack

    specs = load_pack(pack).charts if pack else BUILTIN_PACK
    width = max(len(s.id) for s in specs)
    for spec in specs:
        click.echo(f"{spec.id:<{width}}  {spec.kind:<12}  {spec.source:<36}  {spec.title}")


@cli.command("merge-reports")
@click.argument("dirs", nargs=-1, required=True, metavar="DIR...", type=click.Path(path_type=Path))
@click.option("--output-dir", "output_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Where the merged run's folder goes [default: the first DIR's parent].")
@click.option("--junit-xml", "junit_xml", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the merged run as JUnit XML to this file.")
@click.option("--csv", "write_csv", is_flag=True, help="Also write charts.csv beside report.json.")
def merge_reports_command(dirs: tuple[Path, ...], output_dir: Path | None, junit_xml: Path | None,
                          write_csv: bool) -> None:
    """Fold the reports of a CI matrix's shards (run folders of --shard K/N runs) into one run."""
    from runner.merge_reports import merge_reports

    merged = merge_reports(list(dirs), output_dir, junit_xml, write_csv)
    run = merged.report["run"]
    click.echo(f"merged {len(run['merged_from'])} report(s): {run['charts_ok']} of {run['charts_total']} charts ok, "
               f"{run['status']} (exit {merged.exit_code.value}){'; ' + run['error'] if run['error'] else ''}",
               err=True)
    click.echo(str(merged.report_path))
    sys.exit(merged.exit_code)


# Kept here, not imported from the server module, so `--help` does not load mcp.
MALFORMED_KINDS = ("text", "shape", "nan", "negative", "percent", "huge", "huge_structured", "huge_plain",
                   "deep", "series")


@cli.command("demo-server")
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="0 picks a free port (printed as READY <url>).")
@click.option("--latency-ms", type=click.IntRange(0, 600_000), default=0, show_default=True,
              help="Delay added to every tool call, standing in for a warehouse.")
@click.option("--scale", type=click.FloatRange(0.01, 100), default=1.0, show_default=True,
              help="Multiplier of the synthetic order volume.")
@click.option("--merchants", "merchant_count", type=click.IntRange(24, 5000), default=24, show_default=True,
              help="Merchants in the data set, for scale runs (the first 24 never change).")
@click.option("--exit-with-parent", is_flag=True, help="Exit when stdin closes (the parent is gone).")
@click.option("--fail-rate", type=click.FloatRange(0, 1), default=0.0, help="Fault: share of calls that fail.")
@click.option("--hang", is_flag=True, help="Fault: chart tool calls never answer.")
@click.option("--crash-after", type=click.IntRange(0), default=0, help="Fault: exit during the call after N calls.")
@click.option("--malformed", type=click.Choice(MALFORMED_KINDS), default=None, help="Fault: return bad data.")
@click.option("--fault-tool", "fault_tools", multiple=True, help="Limit faults to this tool (repeatable).")
@click.option("--call-log", default=None, type=click.Path(dir_okay=False),
              help="Append each chart tool call to this file as 'tool merchant' (to count calls).")
def demo_server_command(transport: str, host: str, port: int, latency_ms: int, scale: float, merchant_count: int,
                        exit_with_parent: bool, fail_rate: float, hang: bool, crash_after: int,
                        malformed: str | None, fault_tools: tuple[str, ...], call_log: str | None) -> None:
    """Run the embedded demo MCP server on its own."""
    from runner.demo.server import DemoOptions, serve

    options = DemoOptions(latency_ms=latency_ms, scale=scale, merchants=merchant_count, fail_rate=fail_rate, hang=hang,
                          crash_after=crash_after, malformed=malformed, fault_tools=fault_tools, call_log=call_log)
    serve(transport, host, port, options, exit_with_parent)


@cli.command("demo-data")
@click.option("--sqlite", "sqlite_path", type=click.Path(dir_okay=False), default=None,
              help="Write the demo warehouse as a SQLite file (tables orders and merchants).")
@click.option("--csv", "csv_dir", type=click.Path(file_okay=False), default=None,
              help="Write orders.csv and merchants.csv into this folder.")
@click.option("--merchants", "merchant_count", type=click.IntRange(24, 5000), default=24, show_default=True,
              help="Merchants in the data set (the first 24 never change).")
def demo_data_command(sqlite_path: str | None, csv_dir: str | None, merchant_count: int) -> None:
    """Write the demo data in the SQL pack's `orders` schema, for any SQL MCP server."""
    import sqlite3

    from runner.demo.export import write_csv, write_sqlite

    if not sqlite_path and not csv_dir:
        raise UsageError("demo-data needs --sqlite FILE or --csv DIR (or both)")
    try:
        if sqlite_path:
            write_sqlite(Path(sqlite_path), merchant_count)
            click.echo(sqlite_path)
        if csv_dir:
            for path in write_csv(Path(csv_dir), merchant_count):
                click.echo(str(path))
    except (OSError, sqlite3.Error) as exc:
        where = getattr(exc, "filename", None) or sqlite_path or csv_dir
        why = getattr(exc, "strerror", None) or exc
        raise UsageError(f"cannot write the demo data to {where}: {why}") from None


@dataclass(frozen=True)
class RunSeams:
    """What a program embedding the CLI may replace: the worker-side render function
    (a module-level function, so worker processes can import it)."""

    render: RenderFunction | None = None


def main(seams: RunSeams | None = None) -> None:
    signals.hold()  # the `runner` script starts here, not in __main__
    cli(prog_name="python -m runner", obj=seams)
