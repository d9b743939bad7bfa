"""Which address of this machine a worker elsewhere can reach.

A listener bound to every interface (``0.0.0.0``) cannot be handed out as it is. For a
known host (SSH), the address is the one of the interface the routing table uses toward
it (a UDP socket's ``connect`` asks the kernel and sends nothing). Otherwise (MPI,
Slurm, the join command) it is the first address of an interface that is up and not
loopback, else this machine's name. Either can be overridden with ``advertise``.
"""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFADDR = 0x8915
SIOCGIFFLAGS = 0x8913
IFF_UP = 0x1
IFF_LOOPBACK = 0x8


def toward(host: str) -> str | None:
    """This machine's address on the route to ``host`` (None if there is no route)."""
    try:
        infos = socket.getaddrinfo(host, 9, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    for family, _, _, _, target in infos:
        probe = socket.socket(family, socket.SOCK_DGRAM)
        try:
            probe.connect(target)
            return probe.getsockname()[0]
        except OSError:
            continue
        finally:
            probe.close()
    return None


def interface_addresses() -> list[tuple[str, str]]:
    """(interface, IPv4 address) of every interface that is up and not loopback (Linux)."""
    found = []
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                flags = struct.unpack_from("H", fcntl.ioctl(probe.fileno(), SIOCGIFFLAGS, request), 16)[0]
                if not flags & IFF_UP or flags & IFF_LOOPBACK:
                    continue
                raw = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
            except OSError:
                continue
            found.append((name, socket.inet_ntoa(raw[20:24])))
    finally:
        probe.close()
    return found


def default_host() -> str:
    """An address of this machine that other machines can likely reach."""
    addresses = interface_addresses()
    if addresses:
        return addresses[0][1]
    return socket.getfqdn()


def advertised(bound: str, port: int, override: str | None, host: str | None = None) -> tuple[str, int]:
    """The host and port to hand out for a listener bound to ``bound``:``port``."""
    if override:
        from ..addressing import host_and_port

        return host_and_port(override, port)
    if bound not in ("0.0.0.0", "::", ""):
        return bound, port
    return (toward(host) if host else None) or default_host(), port
