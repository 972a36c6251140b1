"""Network namespaces for the cluster tests: one per host, joined by veth pairs to one bridge.

Public: :class:`Network`, :class:`Host`, :func:`enter_namespace`.

Every name carries a per-run tag (``shoal-<tag>-h<i>`` namespaces, ``shb<tag>`` bridge,
``shv<tag><i>`` veths), so two runs never touch each other's interfaces. The bridge lives in the
root namespace *without* an address, and the subnet exists only inside the namespaces this run
creates: nothing in the root namespace routes to it and no address outside our namespaces is
used. :meth:`Network.teardown` removes everything it created and is safe to call twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random

from pyroute2 import IPRoute, NetNS, netns


@dataclasses.dataclass(slots=True)
class Host:
    index: int
    name: str  # the namespace
    ip: str
    veth: str  # root-namespace end of the veth pair (link down/up acts on it)


def enter_namespace(name: str) -> None:
    """Move the calling *thread* into namespace ``name`` (setns acts per thread): sockets it
    creates from then on live there. Used as a thread-pool initializer for test clients."""
    netns.setns(name)


class Network:
    """A bridge and any number of hosts on ``10.213.<n>.0/24`` (n random per run)."""

    def __init__(self) -> None:
        self.tag = f"{os.getpid() % 0xFFFF:04x}"
        self.subnet = f"10.213.{random.randint(1, 250)}"
        self.bridge = f"shb{self.tag}"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._links: list[str] = []
        with IPRoute() as ip:
            ip.link("add", ifname=self.bridge, kind="bridge")
            self._links.append(self.bridge)
            (index,) = ip.link_lookup(ifname=self.bridge)
            ip.link("set", index=index, state="up")

    def add_host(self, label: str, host_number: int) -> Host:
        """A namespace ``shoal-<tag>-<label>`` with ``eth0`` at ``<subnet>.<host_number>``."""
        name = f"shoal-{self.tag}-{label}"
        veth = f"shv{self.tag}{label}"[:15]
        ip_address = f"{self.subnet}.{host_number}"
        netns.create(name)
        self._namespaces.append(name)
        with IPRoute() as ip:
            ip.link("add", ifname=veth, kind="veth", peer={"ifname": veth + "p"})
            self._links.append(veth)
            (outer,) = ip.link_lookup(ifname=veth)
            (inner,) = ip.link_lookup(ifname=veth + "p")
            (bridge,) = ip.link_lookup(ifname=self.bridge)
            ip.link("set", index=outer, master=bridge, state="up")
            ip.link("set", index=inner, net_ns_fd=name)
        with NetNS(name) as nsip:
            (inner,) = nsip.link_lookup(ifname=veth + "p")
            nsip.link("set", index=inner, ifname="eth0")
            nsip.addr("add", index=inner, address=ip_address, prefixlen=24)
            nsip.link("set", index=inner, state="up")
            (loopback,) = nsip.link_lookup(ifname="lo")
            nsip.link("set", index=loopback, state="up")
        host = Host(host_number, name, ip_address, veth)
        self.hosts[label] = host
        return host

    def set_link(self, host: Host, up: bool) -> None:
        """Cut (or restore) a host's only link: its veth on the bridge side."""
        with IPRoute() as ip:
            (index,) = ip.link_lookup(ifname=host.veth)
            ip.link("set", index=index, state="up" if up else "down")

    def teardown(self) -> None:
        with IPRoute() as ip:
            for link in reversed(self._links):
                with contextlib.suppress(Exception):
                    found = ip.link_lookup(ifname=link)
                    if found:
                        ip.link("del", index=found[0])
        self._links.clear()
        for name in reversed(self._namespaces):
            with contextlib.suppress(Exception):
                netns.remove(name)
        self._namespaces.clear()
