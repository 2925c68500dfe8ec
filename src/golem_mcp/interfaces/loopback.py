"""The loopback rule: which ``Host`` and ``Origin`` values name this machine.

One definition, used by every route of the daemon (its middleware) and by ``serve``'s bind check.
A name is loopback only when it is a literal loopback address (``127.0.0.0/8``, ``::1``, also as
an IPv4-mapped ``::ffff:127.x.y.z``) or exactly ``localhost``, with or without a port, IPv6 in
brackets. Anything else is refused, however it starts or ends: ``127.evil.example``,
``127.0.0.1.evil.example``, ``localhost.evil.example`` and ``app.localhost`` are host names a DNS
server (or a DNS-rebinding attacker) answers for, not addresses. RFC 6761 lets conforming
resolvers map ``*.localhost`` to loopback, but not every resolver conforms, so those are refused too.

Stdlib only: the hook and the stdio bridge may call it without paying for the daemon's imports.

Example::

    is_loopback_host("[::1]:4319")                   # True
    is_loopback_host("127.evil.example")             # False
    is_loopback_origin("http://localhost:3000")      # True
"""

from __future__ import annotations

import functools
import ipaddress


def split_host_port(value: str) -> str | None:
    """The host part of ``host[:port]`` / ``[v6][:port]`` / a bare IPv6 address, or None when the
    value is not well formed (a bracket left open, a port that is not a number)."""
    v = value.strip()
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return None
        host, rest = v[1:end], v[end + 1:]
        if ":" not in host or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None  # brackets hold an IPv6 address and nothing else
        return host
    if v.count(":") == 1:
        host, port = v.split(":")
        return host if port.isdigit() else None
    return v  # no port, or a bare IPv6 address (as a bind address is written: ``--host ::1``)


@functools.lru_cache(maxsize=64)  # asked on every request the daemon serves, with the same few values
def is_loopback_host(value: str | None) -> bool:
    """True when ``value`` (a Host header or a bind address) is a literal loopback address or
    ``localhost``, with or without a port."""
    if not value:
        return False
    host = split_host_port(value)
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False  # a host name: only "localhost" is trusted to mean this machine
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def is_loopback_origin(origin: str | None) -> bool:
    """True when an ``Origin`` header names an http(s) page served from a loopback host.
    ``null`` (a file or a sandboxed frame) and every other scheme are refused."""
    if not origin:
        return False
    scheme, sep, rest = origin.strip().partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return False
    if any(c in rest for c in "/@?#") or (rest.count(":") > 1 and not rest.startswith("[")):
        return False  # an Origin is scheme://host[:port] and nothing more; IPv6 goes in brackets
    return is_loopback_host(rest)
