"""Tables the magics show: ``%workers status`` (``StatusTable``) and ``%who_has``. Pure:
rows in, text or HTML out."""

from __future__ import annotations

from html import escape
from typing import Any

FINAL = ("done", "failed", "cancelled")

STATE_COLOURS = {"idle": "#1a7f37", "busy": "#0969da", "waiting": "#9a6700", "unresponsive": "#cf222e",
                  "dead": "#cf222e"}


def state_kind(state: str) -> str:
    """'idle', 'busy', 'waiting', 'unresponsive' or 'dead', from a status row's state."""
    for kind in ("waiting", "unresponsive"):
        if state.startswith(kind):
            return kind
    return state if state in STATE_COLOURS else "busy"


class StatusTable:
    """``%workers status``: an HTML table in a notebook, text elsewhere. A worker that
    needs the user (waiting on another, unresponsive, dead) says so in its state."""

    COLUMNS = ("id", "pid", "host", "state", "cpu", "rss", "task", "names")

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    @staticmethod
    def _cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        if column == "names":
            names = value or []
            return f"{len(names)}: {', '.join(names[:8])}{' …' if len(names) > 8 else ''}" if names else "0"
        if column == "task" and row.get("queued"):
            return f"{value or '-'} (+{row['queued']} queued)"
        if column == "cpu":
            return "-" if value is None else f"{value:.0f}%"
        if column == "rss":
            return "-" if value is None else _size(value)
        if column == "host" and row.get("relayed_from"):
            return f"{value} (via kernel from {', '.join(map(str, row['relayed_from']))})"
        return "-" if value is None or value == "" else str(value)

    def __repr__(self) -> str:
        table = [self.COLUMNS] + [tuple(self._cell(r, c) for c in self.COLUMNS) for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(self.COLUMNS))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table]
        return "\n".join(lines + [f"warning: {w}" for w in memory_warnings(self.rows)])

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{c}</th>" for c in self.COLUMNS)
        body = "".join("<tr>" + "".join(self._html_cell(r, c) for c in self.COLUMNS) + "</tr>" for r in self.rows)
        return (f"<table class='ipyworkers-status'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                + warnings_html(self.rows))

    def _html_cell(self, row: dict[str, Any], column: str) -> str:
        text = escape(self._cell(row, column))
        if column != "state":
            return f"<td style='text-align:left'>{text}</td>"
        kind = state_kind(row.get("state") or "")
        weight = ";font-weight:bold" if kind == "unresponsive" else ""
        return (f"<td class='ipyworkers-{kind}' style='text-align:left;color:{STATE_COLOURS[kind]}{weight}'>"
                f"{text}</td>")


def memory_warnings(rows: list[dict[str, Any]]) -> list[str]:
    """A line for each worker whose memory nears the machine's."""
    return [row["memory_warning"] for row in rows if row.get("memory_warning")]


def warnings_html(rows: list[dict[str, Any]]) -> str:
    return "".join(f"<div class='ipyworkers-warning' style='color:#cf222e;font-weight:bold'>⚠ {escape(w)}</div>"
                   for w in memory_warnings(rows))


def who_has_text(table: dict[str, dict[str, Any]], asked: bool = False) -> str:
    """``%who_has``: a header row, then a row per name. A value whose every holder died or
    was restarted says so (``lost (worker 1 died)``). Unless the names were ``asked`` for,
    names that a task was to bind but did not (it failed first, or was cancelled) are left out."""
    rows = [("name", "held by", "size", "made by")]
    for name, info in table.items():
        if info["task"] is None:
            rows.append((name, "not defined on any worker", "", ""))
            continue
        bound = info["holders"] or info.get("lost") or info["state"] not in FINAL
        if not bound and not asked:
            continue
        if info["holders"]:
            where = ", ".join(_holder(h) for h in info["holders"])
        elif info.get("lost"):
            where = f"lost ({info['lost']})"
        elif info["state"] in FINAL:
            where = f"not bound: task #{info['task']} {info['state']} first"
        else:
            where = "-"
        cell = f" In[{info['cell']}]" if info.get("cell") is not None else ""
        rows.append((name, where, _size(info["size"]) if info["holders"] else "",
                     f"task #{info['task']}{cell} {info['state']}"))
    if len(rows) == 1:
        return "no variables on the workers yet"
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip() for r in rows)


def _holder(holder: int) -> str:
    return "kernel" if holder == 0 else f"worker {holder}"


def _size(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)
