"""The plan of a run: every chart asked for, as one job each, split into batches of a merchant's charts.

A run has no size limit, so the plan is never held whole: the merchants are written once to the
run folder (merchants.jsonl: the job's own copy, which a resume reads again), and the plan is
walked from it, a merchant at a time. Each chart has a position (its place in the walk) and each
batch a number: the journal (runner.journal) names outcomes by them, and the report lists them
in that order.
"""

from __future__ import annotations

import json
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from runner import sql
from runner.charts import ChartSpec
from runner.errors import UsageError
from runner.files import input_lines, safe_part, written_atomically
from runner.records import Batch, ChartJob, ToolCall

MERCHANTS_FILE = "merchants.jsonl"
MAX_COPY_LINE_BYTES = 100_000  # a line of the run's copy: a token and its display name (cleaned, bounded), as JSON


def call_for(spec: ChartSpec, merchant: str, start_date: str, end_date: str,
             query_tool: sql.QueryTool | None) -> ToolCall | None:
    """The chart's MCP call; None for a SQL chart when no query tool was resolved (agent mode,
    where the model writes its own calls)."""
    values: dict[str, sql.Param] = {"merchant_token": merchant, "start_date": spec.retrieval_start(start_date),
                                    "end_date": end_date,
                                    **dict(spec.params)}
    if spec.sql:
        if query_tool is None:
            return None
        return ToolCall(query_tool.name, json.dumps(query_tool.arguments(spec.sql, values)))
    return ToolCall(spec.tool, json.dumps(sql.fill_arguments(dict(spec.arguments), values)))


def write_merchants(run_dir: Path, merchants: Iterable[tuple[str, str]]) -> None:
    """The job's merchants, (token, display name) a line, as the run's own copy."""
    with written_atomically(run_dir / MERCHANTS_FILE, sync=True) as out:
        for token, name in merchants:
            out.write((json.dumps([token, name], ensure_ascii=False) + "\n").encode())


def read_merchants_copy(run_dir: Path) -> Iterator[tuple[str, str]]:
    """The run's copy of its merchants, streamed. Read back as untrusted input: a line that is not
    [token, name] is a UsageError naming it."""
    path = run_dir / MERCHANTS_FILE
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise UsageError(f"{path} cannot be read: {exc.strerror or exc}") from None
    with handle:
        for number, line in input_lines(handle, MAX_COPY_LINE_BYTES, str(path)):
            try:
                token, name = json.loads(line)
                if not isinstance(token, str) or not isinstance(name, str) or not token:
                    raise ValueError
            except ValueError:
                raise UsageError(f"{path}:{number} is not a merchant line the runner wrote") from None
            yield token, name


@dataclass(frozen=True)
class PlannedMerchant:
    index: int  # its place among the run's merchants
    token: str
    name: str
    jobs: tuple[ChartJob, ...]
    first_position: int  # the position of its first job; the others follow
    first_batch: int  # the number of its first batch

    @property
    def positions(self) -> range:
        return range(self.first_position, self.first_position + len(self.jobs))


@dataclass(frozen=True)
class Plan:
    """The run's charts, walked from its merchants copy. `counts` (charts, batches, merchants)
    come from one walk at the start: the journal's index and the report need them."""

    run_dir: Path
    charts: tuple[ChartSpec, ...]
    start_date: str
    end_date: str
    batch_size: int
    only: frozenset[tuple[str, str]] | None = None
    query_tool: sql.QueryTool | None = None
    merchants_given: tuple[tuple[str, str], ...] | None = None  # in memory instead of the copy (tests, bench)

    def with_query_tool(self, query_tool: sql.QueryTool | None) -> Plan:
        return replace(self, query_tool=query_tool)

    def _tokens(self) -> Iterator[tuple[str, str]]:
        if self.merchants_given is not None:
            return iter(self.merchants_given)
        return read_merchants_copy(self.run_dir)

    def merchants(self, calls: bool = True) -> Iterator[PlannedMerchant]:
        """The plan a merchant at a time; without `calls`, the jobs carry no tool call (the report's
        walk, which needs none, is then several times cheaper)."""
        position = batch = 0
        for index, (token, name) in enumerate(self._tokens()):
            folder = self.run_dir / safe_part(token)
            jobs = tuple(
                ChartJob(token, spec, self.start_date, self.end_date, str(folder / f"{safe_part(spec.id)}.png"),
                         call_for(spec, token, self.start_date, self.end_date, self.query_tool) if calls else None)
                for spec in self.charts if self.only is None or (token, spec.id) in self.only)
            yield PlannedMerchant(index, token, name, jobs, position, batch)
            position += len(jobs)
            batch += batch_count(len(jobs), self.batch_size)

    @cached_property
    def counts(self) -> tuple[int, int, int]:
        """(charts, batches, merchants), from one walk: the coordinator, the journal's index and the
        report ask for them, and the merchants copy does not change under a run."""
        charts = batches = merchants = 0
        for merchant in self.merchants(calls=False):
            charts += len(merchant.jobs)
            batches += batch_count(len(merchant.jobs), self.batch_size)
            merchants += 1
        return charts, batches, merchants

    def batches_of(self, merchant: PlannedMerchant, skip: Container[int] = ()) -> Iterator[Batch]:
        """The merchant's batches, without the positions in `skip` (charts already final); a batch
        keeps its number and id, so a resumed run's batch is the same batch."""
        for start in range(0, len(merchant.jobs), self.batch_size):
            number = merchant.first_batch + start // self.batch_size
            placed = [(merchant.first_position + i, merchant.jobs[i])
                      for i in range(start, min(start + self.batch_size, len(merchant.jobs)))
                      if merchant.first_position + i not in skip]
            if placed:
                yield Batch(batch_id(number), merchant.token, tuple(job for _, job in placed),
                            tuple(position for position, _ in placed), number)


def batch_count(charts: int, batch_size: int) -> int:
    """How many batches a merchant's charts make: its last batch may be short."""
    return -(-charts // batch_size)


def batch_id(number: int) -> str:
    return f"batch-{number + 1:03d}"


def plan_batches(
    merchants: list[str],
    charts: tuple[ChartSpec, ...],
    start_date: str,
    end_date: str,
    run_dir: Path,
    batch_size: int,
    query_tool: sql.QueryTool | None = None,
    only: tuple[tuple[str, str], ...] | None = None,
) -> tuple[Batch, ...]:
    """Every batch of a small plan at once (the tests and the bench): each merchant's charts (or only
    the given pairs) in batches of `batch_size`, numbered across the run."""
    plan = Plan(run_dir, charts, start_date, end_date, batch_size, None if only is None else frozenset(only),
                query_tool, tuple((merchant, "") for merchant in merchants))
    return tuple(batch for merchant in plan.merchants() for batch in plan.batches_of(merchant))
