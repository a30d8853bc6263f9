"""Network namespaces for the chaos test's separate worker hosts (``ip netns``, veth)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess


class NetNs:
    """Two network namespaces, each joined to the host by a veth pair."""

    def __init__(self) -> None:
        tag = os.getpid() % 10000
        third = 200 + os.getpid() % 50
        self.hosts: list[tuple[str, str, str, str]] = []  # (ns, host veth, host ip, ns ip)
        for i in (1, 2):
            net = f"10.{third}.{i}"
            self.hosts.append((f"errands-chaos-{tag}-{i}", f"ech{tag}h{i}", f"{net}.1", f"{net}.2"))
        self.created: list[str] = []

    @staticmethod
    def available() -> str | None:
        """None when namespaces can be used, else why not."""
        if os.geteuid() != 0:
            return "not root"
        if shutil.which("ip") is None:
            return "`ip` (iproute2) not installed"
        probe = f"errands-chaos-probe-{os.getpid()}"
        try:
            subprocess.run(["ip", "netns", "add", probe], check=True, capture_output=True)
            subprocess.run(["ip", "netns", "del", probe], check=True, capture_output=True)
        except subprocess.CalledProcessError as exc:
            return f"`ip netns add` failed: {exc.stderr.decode(errors='replace').strip()}"
        return None

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def setup(self) -> None:
        for ns, veth, host_ip, ns_ip in self.hosts:
            self._ip("netns", "add", ns)
            self.created.append(ns)
            self._ip("link", "add", veth, "type", "veth", "peer", "name", veth + "n")
            self._ip("link", "set", veth + "n", "netns", ns)
            self._ip("addr", "add", f"{host_ip}/24", "dev", veth)
            self._ip("link", "set", veth, "up")
            self._ip("netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/24", "dev", veth + "n")
            self._ip("netns", "exec", ns, "ip", "link", "set", veth + "n", "up")
            self._ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def link(self, index: int, up: bool) -> None:
        self._ip("link", "set", self.hosts[index][1], "up" if up else "down")

    def cleanup(self) -> None:
        for ns, veth, _, _ in self.hosts:
            with contextlib.suppress(Exception):
                subprocess.run(["ip", "link", "del", veth], capture_output=True, timeout=30)
            if ns in self.created:
                with contextlib.suppress(Exception):
                    subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
