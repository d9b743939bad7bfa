"""The whole text of one worker's stream in a cell: up to ``KEEP_CHARS`` in memory, the
rest in a file (in the cluster's runtime directory, which ``%workers stop`` removes). The
file stays open, so the text stays readable until its ``KeptText`` is closed."""

from __future__ import annotations

import os
import tempfile
from typing import Any

KEEP_CHARS = 32 * 1024 * 1024
"""Characters of one worker's stdout (or stderr) kept in memory; the rest goes to a file."""


class KeptText:
    """The whole text of one worker's stream: in memory, then in a file."""

    def __init__(self, name: str):
        self.name = name
        self.chunks: list[str] = []
        self.chars = 0
        self.file: Any = None
        self.path: str | None = None

    def add(self, text: str, spill_dir: str | None) -> None:
        self.chars += len(text)
        if self.file is None and self.chars <= KEEP_CHARS:
            self.chunks.append(text)
            return
        if self.file is None:
            fd, self.path = tempfile.mkstemp(prefix=f"output-{self.name}-", suffix=".txt",
                                             dir=spill_dir if spill_dir and os.path.isdir(spill_dir) else None)
            self.file = os.fdopen(fd, "w+b")
            self.chunks.append(text)
            text, self.chunks = "".join(self.chunks), []
        self.file.write(text.encode("utf-8", "surrogatepass"))

    def snapshot(self) -> Any:
        """Under the sink's lock: what ``read`` needs, without reading a file yet."""
        if self.file is None:
            return list(self.chunks)
        self.file.flush()
        return self.file.fileno(), self.file.tell()

    @staticmethod
    def read(snapshot: Any) -> str:
        """Outside the lock: the text, read back from the file if it went there."""
        if isinstance(snapshot, list):
            return "".join(snapshot)
        fd, size = snapshot
        return os.pread(fd, size, 0).decode("utf-8", "surrogatepass")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            try:
                os.unlink(self.path)
            except OSError:
                pass


def close_all(kept: dict) -> None:
    for item in list(kept.values()):
        item.close()

