"""`accessdrift report`: one self-contained HTML file for auditors and policy owners, from what a
replay reported (its records and the end of every obligation).

The numbers come from `summarise`, a pure function of the records and ended obligations: time to
revoke per trigger, privileged access apart (exact percentiles, the share met within the window,
the distribution), findings over time, offboarding evidence completeness and control debt.
`render` writes them as HTML with inline CSS and SVG charts (no script, nothing fetched), every
value escaped. With a second summary of the same history under another policy it adds the
what-if: how findings and shares within the window would change.

Every number the page shows sits in an element with a `data-metric` attribute, so a test (or a
script) can read the page back.
"""

from __future__ import annotations

import html
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from accessdrift.models.clock import US_PER_S, format_duration_s, format_us
from accessdrift.models.findings import FindingRecord, ObligationEnded, OffboardingRecord, Record
from accessdrift.models.vocabulary import Trigger

#: Bounds of the distribution chart's columns (seconds): minutes to a month.
DISTRIBUTION_BOUNDS_S: Final = (60, 300, 900, 3600, 4 * 3600, 86_400, 3 * 86_400, 7 * 86_400)
_DAY_US: Final = 86_400 * US_PER_S


@dataclass(frozen=True)
class TriggerRow:
    """Obligations of one trigger, privileged access or the rest, over the whole history."""

    trigger: str
    privileged: bool
    on_time: int
    late: int
    #: Unmet at the end of the history: the finding is still open.
    unmet: int
    exception_expired: int
    withdrawn: int
    findings: int
    #: Exact, from every time to revoke (on time and late); None when nothing was met.
    p50_s: float | None
    p90_s: float | None
    p99_s: float | None
    #: How many times to revoke fall at or under each of DISTRIBUTION_BOUNDS_S, then above.
    distribution: tuple[int, ...]

    @property
    def met(self) -> int:
        return self.on_time + self.late

    @property
    def owed(self) -> int:
        """Obligations that were owed and judged: met on time, late, or not yet (an expired
        exception's obligation is one of the late or unmet ones)."""
        return self.on_time + self.late + self.unmet

    @property
    def within_window(self) -> float | None:
        """The share of owed obligations met within their window."""
        return self.on_time / self.owed if self.owed else None


@dataclass(frozen=True)
class Summary:
    rows: list[TriggerRow]
    first_us: int | None
    last_us: int | None
    #: Per day (UTC midnight, µs): findings opened and resolved.
    opened_per_day: dict[int, int]
    resolved_per_day: dict[int, int]
    open_at_end: int
    #: Offboarding: terminated identities with complete evidence, of them all within window,
    #: and identities with leaver findings still open (evidence incomplete).
    offboarded: int
    offboarded_within_window: int
    offboarding_incomplete: int
    #: Control debt: obligations an exception deferred past their window (its expiry came with
    #: the access in place), and how many such expiries there were.
    deferred_by_exception: int
    exceptions_expired_unmet: int
    findings_by_trigger: dict[str, int] = field(default_factory=dict)


def _quantile(values: list[float], q: float) -> float | None:
    """The q-quantile by the nearest-rank method (a value that occurred)."""
    if not values:
        return None
    return values[max(0, math.ceil(q * len(values)) - 1)]


def _day(at_us: int) -> int:
    return at_us - at_us % _DAY_US


def summarise(
    records: Iterable[Record], ended: Iterable[ObligationEnded], open_privileged: frozenset[str]
) -> Summary:
    """`open_privileged`: the findings still open at the end whose access is privileged (the
    finding records do not say; the state does)."""
    outcomes: dict[tuple[Trigger, bool], Counter[str]] = defaultdict(Counter)
    times: dict[tuple[Trigger, bool], list[float]] = defaultdict(list)
    deferred: set[str] = set()
    expired_unmet = 0
    ended_items = list(ended)
    for item in ended_items:
        key = (item.trigger, item.privileged)
        outcomes[key][item.outcome] += 1
        if item.time_to_revoke_us is not None:
            times[key].append(item.time_to_revoke_us / US_PER_S)
        if item.exception_id is not None:
            deferred.add(item.finding_id)
        if item.outcome == "exception_expired":
            expired_unmet += 1

    opened: dict[str, FindingRecord] = {}
    resolved: set[str] = set()
    opened_per_day: Counter[int] = Counter()
    resolved_per_day: Counter[int] = Counter()
    offboarded = offboarded_within = 0
    moments: list[int] = []
    for record in records:
        if isinstance(record, OffboardingRecord):
            offboarded += 1
            offboarded_within += record.all_within_window
            moments.append(record.completed_at_us)
            continue
        moments.append(record.detected_at_us)
        if record.status == "open":
            opened[record.finding_id] = record
            opened_per_day[_day(record.detected_at_us)] += 1
        else:
            resolved.add(record.finding_id)
            if record.resolved_at_us is not None:
                resolved_per_day[_day(record.resolved_at_us)] += 1
    still_open = [r for fid, r in opened.items() if fid not in resolved]
    # A finding resolved late ended as `late`, with its privileged flag; one still open has not
    # ended, and counts as unmet.
    privileged_of = {item.finding_id: item.privileged for item in ended_items}
    unmet: Counter[tuple[Trigger, bool]] = Counter()
    findings: Counter[tuple[Trigger, bool]] = Counter()
    for record in opened.values():
        fid = record.finding_id
        privileged = fid in open_privileged or privileged_of.get(fid, False)
        findings[(record.trigger, privileged)] += 1
        if fid not in resolved:
            unmet[(record.trigger, privileged)] += 1

    rows = []
    for key in sorted(set(outcomes) | set(unmet) | set(findings)):
        counts = outcomes.get(key, Counter())
        values = sorted(times.get(key, []))
        distribution = [0] * (len(DISTRIBUTION_BOUNDS_S) + 1)
        for value in values:
            column = next(
                (i for i, bound in enumerate(DISTRIBUTION_BOUNDS_S) if value <= bound),
                len(DISTRIBUTION_BOUNDS_S),
            )
            distribution[column] += 1
        rows.append(
            TriggerRow(
                trigger=key[0],
                privileged=key[1],
                on_time=counts["on_time"],
                late=counts["late"],
                unmet=unmet[key],
                exception_expired=counts["exception_expired"],
                withdrawn=counts["withdrawn"],
                findings=findings[key],
                p50_s=_quantile(values, 0.5),
                p90_s=_quantile(values, 0.9),
                p99_s=_quantile(values, 0.99),
                distribution=tuple(distribution),
            )
        )
    incomplete = {r.identity_id for r in still_open if r.trigger == "leaver"}
    by_trigger: Counter[str] = Counter(r.trigger for r in opened.values())
    return Summary(
        rows=rows,
        first_us=min(moments) if moments else None,
        last_us=max(moments) if moments else None,
        opened_per_day=dict(sorted(opened_per_day.items())),
        resolved_per_day=dict(sorted(resolved_per_day.items())),
        open_at_end=len(still_open),
        offboarded=offboarded,
        offboarded_within_window=offboarded_within,
        offboarding_incomplete=len(incomplete),
        deferred_by_exception=len(deferred),
        exceptions_expired_unmet=expired_unmet,
        findings_by_trigger=dict(sorted(by_trigger.items())),
    )


# -- HTML ----------------------------------------------------------------------------------------

_CSS: Final = """
body { font-family: system-ui, sans-serif; color: #1d2330; max-width: 1100px; margin: 0 auto;
  padding: 24px 32px 64px }
h1 { font-size: 24px; margin: 0 0 4px }
h2 { font-size: 18px; margin: 32px 0 8px; border-bottom: 1px solid #e4e7ec; padding-bottom: 4px }
.muted { color: #667085; font-size: 13px }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 8px 0 }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e4e7ec }
th { color: #667085 }
td.n { text-align: right; font-variant-numeric: tabular-nums }
.tiles { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px }
.tile { background: #f8f9fb; border: 1px solid #e4e7ec; border-radius: 8px; padding: 12px 14px;
  font-size: 13px; color: #667085 }
.tile b { display: block; font-size: 24px; color: #1d2330 }
.up { color: #12845e } .down { color: #d92d20 }
svg text { font-size: 11px; fill: #667085 }
.bar-on { fill: #12845e } .bar-late { fill: #d92d20 } .bar-unmet { fill: #7a271a }
.col { fill: #5b7bd5 } .col2 { fill: #f0a03c }
"""
#: What a cell shows for a value that is not there (an en dash).
_NONE: Final = "\u2013"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _duration(seconds: float | None) -> str:
    return _NONE if seconds is None else format_duration_s(seconds)


def _share(value: float | None) -> str:
    return _NONE if value is None else f"{100 * value:.1f} %"


def _label(row: TriggerRow) -> str:
    return f"{row.trigger}{' (privileged)' if row.privileged else ''}"


def _cell(metric: str, text: str, numeric: bool = True) -> str:
    return f'<td{" class=n" if numeric else ""} data-metric="{_e(metric)}">{_e(text)}</td>'


def _share_bar(row: TriggerRow, width: int = 220) -> str:
    total = row.owed or 1
    on, late = width * row.on_time / total, width * row.late / total
    unmet = width * row.unmet / total
    return (
        f'<svg width="{width}" height="14" role="img"><title>{row.on_time} on time, '
        f"{row.late} late, {row.unmet} unmet</title>"
        f'<rect class="bar-on" x="0" y="0" width="{on:.1f}" height="14"/>'
        f'<rect class="bar-late" x="{on:.1f}" y="0" width="{late:.1f}" height="14"/>'
        f'<rect class="bar-unmet" x="{on + late:.1f}" y="0" width="{unmet:.1f}" height="14"/></svg>'
    )


def _distribution(row: TriggerRow) -> str:
    column, height = 22, 40
    most = max(1, *row.distribution)
    labels = [format_duration_s(b) for b in DISTRIBUTION_BOUNDS_S] + ["more"]
    bars = []
    for i, (count, label) in enumerate(zip(row.distribution, labels, strict=True)):
        h = height * count / most
        bars.append(
            f'<rect class="col" x="{i * column + 2}" y="{height - h:.1f}" width="{column - 4}" '
            f'height="{h:.1f}"><title>{count} within {_e(label)}</title></rect>'
        )
    return f'<svg width="{len(labels) * column}" height="{height}" role="img">{"".join(bars)}</svg>'


def _days_chart(summary: Summary) -> str:
    days = sorted(set(summary.opened_per_day) | set(summary.resolved_per_day))
    if not days:
        return '<p class="muted">No finding in this history.</p>'
    width, height, column = 1000, 120, max(4, min(40, 1000 // max(1, len(days))))
    most = max(1, *summary.opened_per_day.values(), *summary.resolved_per_day.values())
    parts = []
    for i, day in enumerate(days):
        opened, resolved = summary.opened_per_day.get(day, 0), summary.resolved_per_day.get(day, 0)
        x = i * column
        label = datetime.fromtimestamp(day / US_PER_S, UTC).strftime("%Y-%m-%d")
        for offset, count, kind in ((0, opened, "col"), (column / 2, resolved, "col2")):
            h = (height - 16) * count / most
            parts.append(
                f'<rect class="{kind}" x="{x + offset + 1:.1f}" y="{height - 16 - h:.1f}" '
                f'width="{column / 2 - 2:.1f}" height="{h:.1f}"><title>{label}: {count} '
                f"{'opened' if kind == 'col' else 'resolved'}</title></rect>"
            )
        if len(days) <= 31:
            parts.append(f'<text x="{x + 2}" y="{height - 2}">{label[5:]}</text>')
    used = min(width, len(days) * column)
    return (
        f'<svg width="{used}" height="{height}" role="img" data-metric="days">{"".join(parts)}'
        '</svg><p class="muted">Blue: findings opened per day (UTC). Orange: resolved.</p>'
    )


def _time_to_revoke_table(summary: Summary) -> str:
    head = (
        "<tr><th>Trigger</th><th>Owed</th><th>On time</th><th>Late</th><th>Unmet</th>"
        "<th>Within window</th><th></th><th>p50</th><th>p90</th><th>p99</th>"
        "<th>Distribution (1m … 7d, more)</th></tr>"
    )
    rows = []
    for row in summary.rows:
        if not row.owed:
            continue
        key = f"{row.trigger}.{'privileged' if row.privileged else 'ordinary'}"
        rows.append(
            f'<tr data-row="{_e(key)}"><td>{_e(_label(row))}</td>'
            + _cell(f"{key}.owed", str(row.owed))
            + _cell(f"{key}.on_time", str(row.on_time))
            + _cell(f"{key}.late", str(row.late))
            + _cell(f"{key}.unmet", str(row.unmet))
            + _cell(f"{key}.within_window", _share(row.within_window))
            + f"<td>{_share_bar(row)}</td>"
            + _cell(f"{key}.p50", _duration(row.p50_s))
            + _cell(f"{key}.p90", _duration(row.p90_s))
            + _cell(f"{key}.p99", _duration(row.p99_s))
            + f"<td>{_distribution(row)}</td></tr>"
        )
    return f'<table id="time-to-revoke">{head}{"".join(rows)}</table>'


def _totals(summary: Summary, privileged: bool | None = None) -> tuple[int, int]:
    rows = [r for r in summary.rows if privileged is None or r.privileged == privileged]
    return sum(r.on_time for r in rows), sum(r.owed for r in rows)


def _compare(base: Summary, other: Summary, other_name: str) -> str:
    keys = sorted({(r.trigger, r.privileged) for r in base.rows + other.rows if r.owed})
    a = {(r.trigger, r.privileged): r for r in base.rows}
    b = {(r.trigger, r.privileged): r for r in other.rows}
    lines = []
    for key in keys:
        left, right = a.get(key), b.get(key)
        name = f"{key[0]}{' (privileged)' if key[1] else ''}"
        metric = f"{key[0]}.{'privileged' if key[1] else 'ordinary'}"
        share_a = left.within_window if left else None
        share_b = right.within_window if right else None
        findings_a, findings_b = (left.findings if left else 0), (right.findings if right else 0)
        delta = ""
        if share_a is not None and share_b is not None:
            points = 100 * (share_b - share_a)
            kind = "up" if points > 0 else "down" if points < 0 else ""
            delta = f'<span class="{kind}">{points:+.1f} pts</span>'
        lines.append(
            f"<tr><td>{_e(name)}</td>"
            + _cell(f"compare.{metric}.findings.base", str(findings_a))
            + _cell(f"compare.{metric}.findings.other", str(findings_b))
            + _cell(f"compare.{metric}.within_window.base", _share(share_a))
            + _cell(f"compare.{metric}.within_window.other", _share(share_b))
            + f"<td class=n>{delta}</td></tr>"
        )
    return (
        f"<h2>What if: the same history under {_e(other_name)}</h2>"
        '<p class="muted">Every event replayed again under the other policy: the findings it would '
        "raise and the share of obligations it would count as met within the window.</p>"
        '<table id="compare"><tr><th>Trigger</th><th>Findings (this policy)</th>'
        f"<th>Findings ({_e(other_name)})</th><th>Within window (this policy)</th>"
        f"<th>Within window ({_e(other_name)})</th><th>Change</th></tr>{''.join(lines)}</table>"
    )


def render(
    summary: Summary,
    title: str,
    policy_name: str,
    compare: tuple[str, Summary] | None = None,
) -> str:
    """The report as one HTML document."""
    span = (
        f"{format_us(summary.first_us)} to {format_us(summary.last_us)}"
        if summary.first_us is not None and summary.last_us is not None
        else "no records"
    )
    on_time, owed = _totals(summary)
    p_on, p_owed = _totals(summary, privileged=True)
    offboardings = summary.offboarded + summary.offboarding_incomplete
    tiles = [
        ("within_window", _share(on_time / owed if owed else None), "obligations met in window"),
        ("privileged_within_window", _share(p_on / p_owed if p_owed else None),
         "privileged access met in window"),
        ("open_at_end", str(summary.open_at_end), "findings open at the end"),
        ("offboarding_complete", f"{summary.offboarded} of {offboardings}",
         "offboardings with complete evidence"),
    ]  # fmt: skip
    tile_html = "".join(
        f'<div class="tile"><b data-metric="{name}">{_e(value)}</b>{_e(text)}</div>'
        for name, value, text in tiles
    )
    findings_rows = "".join(
        f"<tr><td>{_e(trigger)}</td>{_cell(f'findings.{trigger}', str(count))}</tr>"
        for trigger, count in summary.findings_by_trigger.items()
    )
    body = f"""<h1>{_e(title)}</h1>
<p class="muted">History {_e(span)} · policy {_e(policy_name)} · made by accessdrift report</p>
<div class="tiles">{tile_html}</div>
<h2>Time to revoke</h2>
<p class="muted">Per trigger, privileged access apart. Owed: obligations judged (met on time,
late, or still unmet at the end). Percentiles are exact, over the obligations met.</p>
{_time_to_revoke_table(summary)}
<h2>Findings over time</h2>
{_days_chart(summary)}
<table id="findings-by-trigger"><tr><th>Trigger</th><th>Findings raised</th></tr>
{findings_rows}</table>
<h2>Offboarding evidence</h2>
<table id="offboarding">
<tr><td>Terminated identities with every entitlement revoked (evidence complete)</td>
{_cell("offboarded", str(summary.offboarded))}</tr>
<tr><td>… of them, every revocation within its window</td>
{_cell("offboarded_within_window", str(summary.offboarded_within_window))}</tr>
<tr><td>Terminated identities with access still open at the end (evidence incomplete)</td>
{_cell("offboarding_incomplete", str(summary.offboarding_incomplete))}</tr></table>
<h2>Control debt</h2>
<table id="control-debt">
<tr><td>Obligations deferred by an approved exception past their window</td>
{_cell("deferred_by_exception", str(summary.deferred_by_exception))}</tr>
<tr><td>Exceptions that expired with the access still in place</td>
{_cell("exceptions_expired_unmet", str(summary.exceptions_expired_unmet))}</tr></table>
{_compare(summary, compare[1], compare[0]) if compare else ""}"""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
