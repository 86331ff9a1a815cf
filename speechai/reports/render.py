"""Text renderings of a report: aligned tables for the terminal, GitHub-flavoured Markdown, JSON."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from speechai.reports.data import MIXED, Column, Report, Section, to_json

# Long listings are cut in the terminal (the other formats carry every row).
TERMINAL_MAX_ROWS = 50
# Stored text (an agent's variable, a do-not-call reason) may hold control characters: shown escaped,
# never sent to the terminal as they are (an escape sequence would rewrite the screen).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def cell_text(value: Any, column: Column, currency: str = "USD") -> str:
    if value is None:
        return ""
    if column.kind == "rate" and isinstance(value, Decimal):
        return f"{value * 100:.1f}%"
    if column.kind == "cents" and isinstance(value, Decimal):
        return f"{value.normalize():f}" if value != value.to_integral_value() else f"{int(value)}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    return str(value).translate(_CONTROLS)


def money_text(cents: Decimal | None, currency: str) -> str:
    if cents is None:
        return "–"
    return f"{cents / 100:,.2f} {currency}"


def _pct(rate: Decimal | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f}%"


def _headline(report: Report) -> list[str]:
    t = report.section("totals").records()[0]
    f = report.filter.to_dict()
    if report.currency == MIXED:  # accounts of different currencies: one sum per currency
        cost = " + ".join(money_text(v, k) for k, v in sorted(report.costs_by_currency.items()))
        unit = "money columns (*_cents) are in cents of each batch's currency (see the batches' currency column)"
    else:
        cost = (f"{money_text(t['cost_cents'], report.currency)} (per call "
                f"{money_text(t['cost_per_call_cents'], report.currency)}, per success "
                f"{money_text(t['cost_per_success_cents'], report.currency)})")
        unit = "money columns (*_cents) are in cents of " + report.currency
    promised = "–" if t["promised_amount"] is None else f"{t['promised_amount']:,}"
    if t["promised_currency"] and t["promised_amount"] is not None:
        promised += f" {t['promised_currency']}"
    scope = ", ".join(f"{k} {v}" for k, v in f.items() if v) or "all batches, all dates"
    return [
        f"SpeechAI campaign report — {scope} (generated {report.generated_at.strftime('%Y-%m-%d %H:%M %Z')})",
        f"{t['batches']} batches, {t['jobs']} jobs; {t['calls']} calls ({t['not_placed']} not placed); "
        f"contacts {t['contacts']} ({_pct(t['contact_rate'])}), successes {t['successes']} ({_pct(t['success_rate'])})",
        f"talk time {t['talk_minutes']} min; cost {cost}; promises to pay {t['promises']} "
        f"totalling {promised}; do-not-call additions {t['do_not_call_added']}",
        unit,
    ]


def _table(section: Section, currency: str, limit: int | None) -> tuple[list[str], list[list[str]], int]:
    header = [c.name for c in section.columns]
    rows = section.rows if limit is None else section.rows[:limit]
    body = [[cell_text(v, c, currency) for c, v in zip(section.columns, row, strict=True)] for row in rows]
    return header, body, len(section.rows) - len(rows)


def render_terminal(report: Report) -> str:
    out = [*_headline(report), ""]
    for section in report.sections.values():
        if section.key == "totals":
            continue
        out.append(f"== {section.title} ==")
        if not section.rows:
            out += ["(none)", ""]
            continue
        header, body, cut = _table(section, report.currency, TERMINAL_MAX_ROWS)
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
        numeric = [c.kind not in ("text",) for c in section.columns]

        def line(cells: list[str], widths: list[int] = widths, numeric: list[bool] = numeric) -> str:
            return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric, strict=True))

        out += [line(header).rstrip(), "  ".join("-" * w for w in widths), *(line(r).rstrip() for r in body)]
        if cut:
            out.append(f"… {cut} more rows (use --format xlsx, markdown or json for all)")
        out.append("")
    return "\n".join(out)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    head = _headline(report)
    out = [f"# {head[0]}", "", *(f"- {h}" for h in head[1:]), ""]
    for section in report.sections.values():
        if section.key == "totals":
            continue
        out += [f"## {section.title}", ""]
        if not section.rows:
            out += ["(none)", ""]
            continue
        header, body, _ = _table(section, report.currency, None)
        align = ["---:" if c.kind != "text" else "---" for c in section.columns]
        out += ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
        out += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in body]
        out.append("")
    return "\n".join(out)


def render_json(report: Report) -> str:
    return json.dumps(to_json(report), indent=2, ensure_ascii=False)
