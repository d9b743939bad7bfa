"""What a cell shows, segment by segment: the bounded tail of what was printed
(``TextTail``: ``TAIL_LINES`` lines, ``TAIL_CHARS`` characters) or a rich display
(``RichDisplay``), each one display output; and the text's own rules: ``[worker N]``
line prefixes, stderr in red, lines rewritten with ``\\r``."""

from __future__ import annotations

import itertools

TAIL_LINES = 200
TAIL_CHARS = 64 * 1024

STDERR_STYLE = ("\x1b[31m", "\x1b[0m")

_uids = itertools.count(1)


class TextTail:
    """A text output: the tail of what was printed since the previous rich display,
    then errors and notes, which are never cut."""

    def __init__(self) -> None:
        self.uid = next(_uids)
        self.version = 0
        self.pieces: list[list[str]] = []
        self.chars = 0
        self.dropped_lines = 0
        self.dropped_chars = 0
        self.trailer: list[tuple[str, str]] = []

    def add(self, style: str, text: str) -> None:
        if self.pieces and self.pieces[-1][0] == style:
            self.pieces[-1][1] += text
        else:
            self.pieces.append([style, text])
        self.chars += len(text)
        self.version += 1
        self._trim()

    def _trim(self) -> None:
        """Keep the last ``TAIL_LINES`` lines (and a partial one), at most ``TAIL_CHARS``."""
        budget, lines = TAIL_CHARS, 0
        for index in range(len(self.pieces) - 1, -1, -1):
            text = self.pieces[index][1]
            start = max(0, len(text) - budget)
            cut, pos = None, len(text)
            while True:
                pos = text.rfind("\n", start, pos)
                if pos < 0:
                    break
                lines += 1
                if lines > TAIL_LINES:
                    cut = pos + 1
                    break
            if cut is None and start > 0:
                cut = start
            if cut is not None:
                self._drop(index, cut)
                return
            budget -= len(text)

    def _drop(self, index: int, cut: int) -> None:
        for _, text in self.pieces[:index]:
            self.dropped_lines += text.count("\n")
            self.dropped_chars += len(text)
            self.chars -= len(text)
        piece = self.pieces[index]
        self.dropped_lines += piece[1].count("\n", 0, cut)
        self.dropped_chars += cut
        self.chars -= cut
        piece[1] = piece[1][cut:]
        del self.pieces[:index]

    def end_with(self, style: str, text: str) -> None:
        self.trailer.append((style, text))
        self.version += 1

    def bundle(self, where: str) -> tuple[dict, dict]:
        parts = []
        if self.dropped_chars:
            what = (f"{self.dropped_lines:,} lines" if self.dropped_lines
                    else f"{self.dropped_chars:,} characters")
            parts.append(f"… {what} not shown; all of it: {where}\n")
        parts.extend(_styled(style, text) for style, text in self.pieces)
        if self.trailer and self.pieces and not self.pieces[-1][1].endswith("\n"):
            parts.append("\n")
        parts.extend(_styled(style, text.rstrip("\n") + "\n") for style, text in self.trailer)
        return {"text/plain": carriage_returns("".join(parts))}, {}


class RichDisplay:
    """A rich display (a figure, HTML, a value): an output of its own."""

    def __init__(self, data: dict, metadata: dict, display_id: str | None):
        self.uid = next(_uids)
        self.version = 0
        self.data = data
        self.metadata = metadata
        self.display_id = display_id

    def replace(self, data: dict, metadata: dict) -> None:
        self.data, self.metadata = data, metadata
        self.version += 1

    def bundle(self, where: str) -> tuple[dict, dict]:
        return self.data, self.metadata


def _styled(style: str, text: str) -> str:
    if style == "stdout" or not text:
        return text
    if style == "error":
        return text
    return STDERR_STYLE[0] + text + STDERR_STYLE[1]


def carriage_returns(text: str) -> str:
    """What a terminal shows for lines rewritten with ``\\r`` (progress bars)."""
    if "\r" not in text:
        return text
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if "\r" in line:
            line = line.rstrip("\r")
            lines[i] = line[line.rfind("\r") + 1:]
    return "\n".join(lines)


class Prefixer:
    """``[worker N] `` at the start of each line, across records; one ``str.replace`` a record."""

    def __init__(self) -> None:
        self._at_start: dict[tuple[int, str], bool] = {}

    def __call__(self, worker: int, name: str, text: str) -> str:
        if not text:
            return text
        prefix = f"[worker {worker}] "
        out = text.replace("\n", "\n" + prefix)
        if text.endswith("\n"):
            out = out[:-len(prefix)]
        if self._at_start.get((worker, name), True):
            out = prefix + out
        self._at_start[(worker, name)] = text.endswith("\n")
        return out
