"""Bounded waits for tests: every wait ends, and says what it waited for."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> float:
    """Poll ``predicate`` until true; the seconds it took. AssertionError past ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started
