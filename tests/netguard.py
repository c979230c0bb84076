"""A socket guard for the test session: records and refuses any connection that leaves this host.

Tests may reach 127.0.0.0/8, ::1 and this machine's own interface addresses (a local Ray
cluster binds to the node's address), nothing else. A UDP ``connect`` sends no packet (Ray uses
one to learn its address) and is allowed."""
from __future__ import annotations

import ipaddress
import socket
from typing import Any

attempts: list[str] = []
_installed = False
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    socket.socket.connect = _guarded(_real_connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded(_real_connect_ex)  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]


def _local_addresses() -> set[str]:
    found = {"127.0.0.1", "::1", "0.0.0.0", "::"}
    try:
        import psutil

        for addresses in psutil.net_if_addrs().values():
            found.update(a.address.split("%")[0] for a in addresses)
    except Exception:  # psutil is optional here; loopback alone still holds
        pass
    return found


_LOCAL: set[str] | None = None


def is_local_host(host: str) -> bool:
    global _LOCAL
    if host in ("localhost", "", socket.gethostname()) or host.endswith(".localhost"):
        return True
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        return False
    if _LOCAL is None:
        _LOCAL = _local_addresses()
    return host in _LOCAL


def _guarded(real: Any) -> Any:
    def connect(self: socket.socket, address: Any) -> Any:
        if (self.family in (socket.AF_INET, socket.AF_INET6) and self.type == socket.SOCK_STREAM
                and isinstance(address, tuple) and not is_local_host(str(address[0]))):
            attempts.append(f"connect to {address[0]}:{address[1]}")
            raise ConnectionRefusedError(f"memevolve tests: network access to {address[0]} is "
                                         "blocked (no test may leave this machine)")
        return real(self, address)
    return connect


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    name = host.decode() if isinstance(host, bytes) else str(host) if host is not None else ""
    if host is not None and not is_local_host(name):
        attempts.append(f"name lookup of {name}")
        raise socket.gaierror(socket.EAI_NONAME, f"memevolve tests: lookup of {name} is blocked")
    return _real_getaddrinfo(host, *args, **kwargs)
