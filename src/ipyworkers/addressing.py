"""Address strings, both sides: ``unix://PATH`` (or a bare path), ``tcp://HOST:PORT`` and
``tls://HOST:PORT``, IPv6 hosts in brackets."""

from __future__ import annotations

import socket
from typing import Any

SCHEMES = ("unix", "tcp", "tls")


def parse_address(address: str) -> tuple[str, Any]:
    """``(scheme, target)``: ``("unix", path)`` or ``("tcp"|"tls", (host, port))``."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        return "unix", address
    if scheme not in SCHEMES:
        raise ValueError(f"unknown address scheme {scheme!r} in {address!r} (use unix://, tcp:// or tls://)")
    if scheme == "unix":
        return "unix", rest
    return scheme, split_host_port(rest, address)


def split_host_port(text: str, whole: str | None = None) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port``; the port is required."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{whole or text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def host_and_port(text: str, default_port: int) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT``, ``V6`` or ``[V6]:PORT`` (the port is optional)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    return host, int(port) if port else default_port


def format_address(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
