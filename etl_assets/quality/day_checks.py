"""Running the data contracts over a day of a table, in bounded memory.

A day is read with a server-side cursor ordered by the contract's key and validated chunk by chunk
(``chunk_rows`` rows at a time); chunks end only between keys, so uniqueness rules see every row of
a key together and hold for the whole day. The staging check also runs the transform over each row
(to learn what it would reject); on a day larger than ``sample_rows`` it reads an even sample (every
k-th staging row) and the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any, TypeVar

import orjson
import pandas as pd
import pandera.pandas as pa
from sqlalchemy import DateTime, Engine, Float, Integer, Numeric, Select, Table, Text, case, cast, func, select

from etl_assets.markdown import markdown_table
from etl_assets.quality.contracts import Contract, Rule, Severity
from etl_assets.settings import QualitySettings
from etl_assets.transform import TRANSFORM_VERSION, exact_json
from etl_assets.transform.days import day_bounds
from etl_assets.transform.normalize import AcceptedTimes
from etl_assets.transform.pii import PiiPolicy
from etl_assets.transform.staged import transform_record
from etl_assets.warehouse.holds import Verdict
from etl_assets.warehouse.schema import events, staging_events
from etl_assets.warehouse.staging import waiting_to_merge

EXAMPLES_PER_RULE = 5
T = TypeVar("T")


@dataclass
class RuleTally:
    failing: int = 0
    applicable: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RuleVerdict:
    rule: Rule
    failing: int
    applicable: int
    examples: list[dict[str, Any]]

    @property
    def share(self) -> float:
        return self.failing / self.applicable if self.applicable else 0.0

    @property
    def breached(self) -> bool:
        if self.rule.tolerance and self.applicable < self.rule.min_rows:
            return False
        return self.failing > 0 and self.share > self.rule.tolerance

    @property
    def outcome(self) -> str:
        if self.breached:
            return f"failed ({self.rule.severity})"
        if self.failing and self.rule.tolerance and self.applicable < self.rule.min_rows:
            return f"too few rows ({self.applicable:,} < {self.rule.min_rows:,}) for the share to fail; WARN"
        if self.failing and self.rule.severity is Severity.ERROR:
            return "tolerated (WARN)"
        return "within tolerance" if self.failing else "passed"


@dataclass
class ContractReport:
    """What checking one day of a table found, rule by rule."""

    contract: Contract
    day: date
    source: str | None = None
    """The source whose rows were checked (the staging gate judges each source apart), ``None`` for all."""
    rows: int = 0
    chunks: int = 0
    reading: str = "every row"
    rows_waiting: int = 0
    """Of the staging gate's reports: the source's rows of the day waiting to merge (0: it read merged rows)."""
    tallies: dict[str, RuleTally] = field(default_factory=dict)

    def verdicts(self) -> list[RuleVerdict]:
        return [
            RuleVerdict(rule, tally.failing, tally.applicable, tally.examples)
            for rule in self.contract.rules
            for tally in [self.tallies.get(rule.name, RuleTally())]
        ]

    @property
    def severity(self) -> Severity | None:
        """ERROR when an ERROR rule is breached; WARN when a WARN rule is breached or an ERROR rule tolerated."""
        verdicts = self.verdicts()
        if any(verdict.breached and verdict.rule.severity is Severity.ERROR for verdict in verdicts):
            return Severity.ERROR
        if any(
            verdict.breached or (verdict.failing and verdict.rule.severity is Severity.ERROR) for verdict in verdicts
        ):
            return Severity.WARN
        return None

    def add_frame(self, frame: pd.DataFrame) -> None:
        """Validate one chunk with the contract's pandera schema and add its failures to the tallies."""
        self.rows += len(frame)
        self.chunks += 1
        failing: dict[str, list[Any]] = {}
        try:
            self.contract.schema().validate(frame, lazy=True)
        except pa.errors.SchemaErrors as errors:
            for name, cases in errors.failure_cases.groupby("check"):
                failing[str(name)] = list(dict.fromkeys(cases["index"].dropna()))
        for rule in self.contract.rules:
            tally = self.tallies.setdefault(rule.name, RuleTally())
            tally.applicable += int(rule.applicable(frame).sum())
            rows = failing.get(rule.name, [])
            tally.failing += len(rows)
            room = EXAMPLES_PER_RULE - len(tally.examples)
            if rows and room > 0:
                examples = frame.loc[rows[:room], list(self.contract.shown_columns)]
                tally.examples.extend(_json_values(record) for record in examples.to_dict("records"))


def _json_values(record: Mapping[Hashable, Any]) -> dict[str, Any]:
    """A row as JSON-friendly values, for check metadata."""
    values: dict[str, Any] = {}
    for label, raw in record.items():
        name = str(label)
        value = raw.item() if hasattr(raw, "item") and not isinstance(raw, pd.Timestamp) else raw
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
            values[name] = None
        elif isinstance(value, datetime | date | pd.Timestamp):
            values[name] = value.isoformat()
        elif isinstance(value, int | float | str | bool):
            values[name] = value
        else:
            values[name] = str(value)
    return values


def key_aligned_chunks(rows: Iterable[T], key: Callable[[T], Any], size: int) -> Iterator[list[T]]:
    """Chunks of about ``size`` rows from rows ordered by ``key``; rows sharing a key stay in one chunk."""
    chunk: list[T] = []
    for _, group in groupby(rows, key=key):
        chunk.extend(group)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _frame(rows: Sequence[tuple[Any, ...]], table: Table | None, columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=list(columns))
    for name in columns:
        kind = table.c[name].type if table is not None and name in table.c else None
        if isinstance(kind, DateTime) or name == "occurred_at":
            frame[name] = pd.to_datetime(frame[name], utc=True)
        elif isinstance(kind, Integer | Numeric | Float):
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame


def _check_rows(
    report: ContractReport, query: Select[*tuple[Any, ...]], table: Table | None, engine: Engine, chunk_rows: int
) -> None:
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(query)
        columns = list(result.keys())
        key = itemgetter(columns.index(report.contract.key))
        for chunk in key_aligned_chunks(result, key, chunk_rows):
            report.add_frame(_frame(chunk, table, columns))


EVENTS_CHECKED_COLUMNS = frozenset(
    (
        "event_id",
        "occurred_at",
        "event_type",
        "user_id",
        "anonymous_id",
        "session_id",
        "product_id",
        "quantity",
        "price",
        "currency",
        "revenue",
        "total",
        "page_url",
        "source",
        "batch_id",
        "content_hash",
    )
)
"""The columns the events contract reads (the free-form ``properties`` and the timestamps of loading stay out)."""


def check_events_day(engine: Engine, contract: Contract, day: date, quality: QualitySettings) -> ContractReport:
    start, end = day_bounds(day)
    query = (
        select(
            *(
                cast(column, Float).label(column.name) if isinstance(column.type, Numeric) else column
                for column in events.c
                if column.name in EVENTS_CHECKED_COLUMNS
            )
        )
        .where(events.c.occurred_at >= start, events.c.occurred_at < end)
        .order_by(events.c.event_id)
    )
    report = ContractReport(contract, day)
    _check_rows(report, query, events, engine, quality.chunk_rows)
    return report


def check_daily_table(
    engine: Engine, table: Table, contract: Contract, day: date, quality: QualitySettings
) -> ContractReport:
    query = select(table).where(table.c.day == day).order_by(table.c[contract.key])
    report = ContractReport(contract, day)
    _check_rows(report, query, table, engine, quality.chunk_rows)
    return report


STAGING_CHECK_COLUMNS = (
    "staging_id",
    "batch_id",
    "record_no",
    "event_id",
    "event_day",
    "source",
    "occurred_at",
    "rejected_rule",
    "rejection",
)


_CHECKED_STAGING_COLUMNS = (
    staging_events.c.id,
    staging_events.c.batch_id,
    staging_events.c.record_no,
    staging_events.c.event_id,
    staging_events.c.event_day,
    staging_events.c.source,
    staging_events.c.occurred_at,
    staging_events.c.rejected_rule,
    staging_events.c.rejection,
    # the payload of a row the current transform did not make, or rejected: the check transforms it again (as the
    # merge will, or as a re-drive will with a fixed transform)
    case(
        (
            staging_events.c.transform_version.is_distinct_from(TRANSFORM_VERSION)
            | staging_events.c.rejection.is_not(None),
            cast(staging_events.c.payload, Text),
        ),
        else_=None,
    ),
)


def _staged_rows_to_check(
    day: date, transform_version: str, sample_every: int, waiting_only: bool
) -> Select[*tuple[Any, ...]]:
    query = (
        select(*_CHECKED_STAGING_COLUMNS)
        .where(staging_events.c.event_day == day)
        .order_by(staging_events.c.event_id, staging_events.c.id)
    )
    if waiting_only:
        query = query.where(waiting_to_merge())
    if sample_every > 1:
        query = query.where(staging_events.c.id % sample_every == 0)
    return query


def _with_transform_verdict(row: Sequence[Any], accepted: AcceptedTimes, pii: PiiPolicy | None) -> tuple[Any, ...]:
    """A staged row with the transform's verdict, in ``STAGING_CHECK_COLUMNS`` order: the one ingest staged with
    it, or, for a row the current transform did not make or rejected, the transform's now (PII pseudonymized first,
    as the merge does, so no rejection reason shows a PII value)."""
    *staged, occurred_at, rule, rejection, payload = row
    if payload is None:
        return (*staged, occurred_at, rule, rejection)
    result = transform_record(exact_json.loads(payload), accepted, pii or PiiPolicy(fields=()))
    if result.event is None:
        return (*staged, None, result.rejected_rule, result.rejection)
    return (*staged, result.event.occurred_at, None, None)


def check_staged_day(
    engine: Engine,
    contract: Contract,
    day: date,
    transform_version: str,
    accepted: AcceptedTimes,
    quality: QualitySettings,
    pii: PiiPolicy | None = None,
) -> list[ContractReport]:
    """Check, source by source, the staged rows the next merge of ``day`` will read (the whole day when none
    wait): one report per source, so one source's bad rows are judged against its own rows only. A source with
    fewer rows waiting than ``min_rows`` is judged with its latest merged rows of the day too."""
    by_source = (
        select(staging_events.c.source, func.count())
        .where(staging_events.c.event_day == day)
        .group_by(staging_events.c.source)
    )
    with engine.connect() as conn:
        counts: dict[str, int] = dict(conn.execute(by_source.where(waiting_to_merge())).all())
        waiting = bool(counts)
        if not waiting:
            counts = dict(conn.execute(by_source).all())
    total = sum(counts.values())
    sample_every = math.ceil(total / quality.sample_rows) if total > quality.sample_rows else 1
    reports = {source: ContractReport(contract, day, source) for source in sorted(counts)}
    for source, report in reports.items():
        scope = (
            f"the {counts[source]:,} rows waiting to merge"
            if waiting
            else f"all {counts[source]:,} staged rows (none waiting)"
        )
        report.reading = scope if sample_every == 1 else f"a sample of every {sample_every}th row of {scope}"
        report.rows_waiting = counts[source] if waiting else 0
        if waiting and counts[source] < quality.min_rows:
            latest = _latest_merged_rows(engine, day, source, transform_version, quality.min_rows - counts[source])
            if latest:
                report.add_frame(
                    _frame([_with_transform_verdict(row, accepted, pii) for row in latest], None, STAGING_CHECK_COLUMNS)
                )
                report.reading += f" and its {len(latest):,} latest merged rows of the day"
    query = _staged_rows_to_check(day, transform_version, sample_every, waiting_only=waiting)
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=quality.chunk_rows).execute(query)
        rows_with_verdicts = (_with_transform_verdict(row, accepted, pii) for row in result)
        key = itemgetter(STAGING_CHECK_COLUMNS.index(contract.key))
        for chunk in key_aligned_chunks(rows_with_verdicts, key, quality.chunk_rows):
            frame = _frame(chunk, None, STAGING_CHECK_COLUMNS)
            for group_source, rows in frame.groupby("source", sort=False):
                reports[str(group_source)].add_frame(rows)
    return list(reports.values())


def _latest_merged_rows(
    engine: Engine, day: date, source: str, transform_version: str, limit: int
) -> Sequence[Sequence[Any]]:
    """The latest ``limit`` rows of ``source`` and ``day`` that merged already.

    A near-real-time run finds a few rows of a source waiting, too few for a share to mean anything
    (``ETL_QUALITY_MIN_ROWS``); judged with the source's latest rows of the day, a source that keeps sending
    mostly bad rows is held however often its rows merge, and one whose bad hour has passed is not.
    """
    query = (
        select(*_CHECKED_STAGING_COLUMNS)
        .where(staging_events.c.event_day == day, staging_events.c.source == source)
        .where(~waiting_to_merge())
        .order_by(staging_events.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return conn.execute(query).all()


def held_reason(report: ContractReport) -> str | None:
    """Why the staging gate holds ``report``'s source back (the ERROR rules it breached, with their shares), or
    ``None`` when it may merge."""
    breached = [
        verdict for verdict in report.verdicts() if verdict.breached and verdict.rule.severity is Severity.ERROR
    ]
    return (
        "; ".join(
            f"{verdict.rule.name}: {verdict.failing:,} of {verdict.applicable:,} rows ({verdict.share:.1%}), "
            + (f"over the tolerance {verdict.rule.tolerance:.1%}" if verdict.rule.tolerance else "none tolerated")
            for verdict in breached
        )
        or None
    )


def source_verdicts(reports: Sequence[ContractReport]) -> list[Verdict]:
    """The staging gate's verdict on each source of a day's reports: held (with the reason) when it breached an
    ERROR rule over rows that wait to merge; a source whose rows all merged already has nothing to hold."""
    return [
        Verdict(report.source or "", report.rows_waiting, held_reason(report) if report.rows_waiting else None)
        for report in reports
    ]


def _scope(reports: Sequence[ContractReport]) -> tuple[tuple[str, ...], Callable[[ContractReport], tuple[str, ...]]]:
    """The leading columns of a report table: the day, and the source when the reports are by source."""
    if any(report.source is not None for report in reports):
        return ("day", "source"), lambda report: (report.day.isoformat(), report.source or "")
    return ("day",), lambda report: (report.day.isoformat(),)


def rules_markdown(reports: Sequence[ContractReport]) -> str:
    """One line per rule and day (and source): severity, failing rows out of the rows it is about, tolerance,
    outcome."""
    header, scope = _scope(reports)
    return markdown_table(
        (*header, "rule", "severity", "failing", "of", "share", "tolerance", "outcome"),
        (
            (
                *scope(report),
                verdict.rule.name,
                verdict.rule.severity,
                f"{verdict.failing:,}",
                f"{verdict.applicable:,}",
                f"{verdict.share:.2%}",
                f"{verdict.rule.tolerance:.2%}",
                verdict.outcome,
            )
            for report in reports
            for verdict in report.verdicts()
        ),
    )


def failing_rows_markdown(reports: Sequence[ContractReport]) -> str:
    """The first failing rows of every rule that some row fails."""
    header, scope = _scope(reports)
    rows = [
        (*scope(report), verdict.rule.name, verdict.rule.description, orjson.dumps(example).decode())
        for report in reports
        for verdict in report.verdicts()
        for example in verdict.examples
    ]
    return markdown_table((*header, "rule", "what it asks", "row"), rows) if rows else "No failing rows."
