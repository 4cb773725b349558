"""A private network namespace joined to the host by a veth pair, for faults iptables makes.

The server runs inside the namespace on 10.x.y.2; the test talks to it from the host through
10.x.y.1. ``blackhole()`` adds an iptables DROP rule inside the namespace: packets vanish with
no reset and no answer, as on a dead network path. Needs root, ``ip`` and ``iptables``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@dataclass
class NetworkNamespace:
    name: str
    host_ip: str
    inner_ip: str

    def exec_argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def _rule(self, action: str, port: int) -> None:
        for chain, direction in (("INPUT", "--dport"), ("OUTPUT", "--sport")):
            _run(*self.exec_argv("iptables", action, chain, "-p", "tcp", direction, str(port), "-j", "DROP"))

    def blackhole(self, port: int) -> None:
        """Drop every packet to and from *port* inside the namespace."""
        self._rule("-A", port)

    def restore(self, port: int) -> None:
        self._rule("-D", port)


@contextlib.contextmanager
def network_namespace() -> Iterator[NetworkNamespace]:
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"network namespace tests need {missing} (apt-get install iproute2 iptables)")
    tag = uuid.uuid4().hex[:8]
    name, host_end, inner_end = f"abs-{tag}", f"abs{tag}h", f"abs{tag}n"
    subnet = f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:4], 16)}"
    host_ip, inner_ip = f"{subnet}.1", f"{subnet}.2"
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", inner_end)
        _run("ip", "link", "set", inner_end, "netns", name)
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", host_end)
        _run("ip", "link", "set", host_end, "up")
        namespace = NetworkNamespace(name, host_ip, inner_ip)
        _run(*namespace.exec_argv("ip", "addr", "add", f"{inner_ip}/30", "dev", inner_end))
        _run(*namespace.exec_argv("ip", "link", "set", inner_end, "up"))
        _run(*namespace.exec_argv("ip", "link", "set", "lo", "up"))
        yield namespace
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True, check=False, timeout=30)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False, timeout=30)
