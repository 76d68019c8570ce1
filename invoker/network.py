"""The action network: outbound access for action containers, with the platform walled off.

Actions join one Docker bridge per stack with inter-container traffic off (no tenant reaches another's container;
Docker's isolation chains keep them off other Docker networks). Two iptables chains wall off the rest:
- `<chain>-IN` (jumped to from INPUT for the bridge): the host itself. Only the API ingress on the bridge's
  gateway is open, as in OpenWhisk; Kafka, CouchDB, Connect, dockerd and every other host port are refused.
- `<chain>-FWD` (from DOCKER-USER): forwarded destinations that are refused anyway: the cloud metadata ranges and
  whatever the operator lists in WSK_ACTION_DENY (e.g. the platform's hosts when it runs on other machines).
Everything else is forwarded and masqueraded by Docker as usual: an action reaches the outside world.
The rules are replaced in one iptables-restore commit, so a second invoker re-applying them leaves no gap.
If the wall cannot be built, the caller gives actions no network at all: isolation comes first.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from contracts.settings import Settings

log = logging.getLogger("invoker.network")

# Link-local covers AWS/GCP/Azure/OpenStack metadata (169.254.169.254); Alibaba's sits in CGNAT space.
METADATA = ("169.254.0.0/16", "100.100.100.200/32")
LABEL = "streamwhisk.action-network"  # the stack's prefix
# The operator's choices, read by the invoker and by `up` (which makes the network before nginx listens on it).
WANTED = os.environ.get("WSK_ACTION_NETWORK", "default") != "none"
DENY = tuple(os.environ.get("WSK_ACTION_DENY", "").replace(",", " ").split())
HOME_LABEL = "streamwhisk.home"  # the stack's state dir: a stack whose processes are all gone left it behind


@dataclass(frozen=True)
class ActionNetwork:
    name: str
    bridge: str
    gateway: str
    subnet: str


def names(prefix: str) -> tuple[str, str, str]:
    """(docker network, bridge interface, iptables chain stem) of a stack; interface names are <= 15 bytes.

    >>> names("whisk")
    ('streamwhisk-whisk', 'sw-19312273f4', 'SW-19312273f4')
    """
    h = hashlib.sha256(prefix.encode()).hexdigest()[:10]
    return f"streamwhisk-{prefix}", f"sw-{h}", f"SW-{h}"


def wall_rules(chain: str, gateway: str, ingress_port: int, deny: tuple[str, ...]) -> str:
    """The iptables-restore text of both chains (declaring a chain with --noflush replaces its rules).

    >>> print(wall_rules("SW-x", "172.18.0.1", 3233, ("169.254.0.0/16",)))
    *filter
    :SW-x-IN - [0:0]
    :SW-x-FWD - [0:0]
    -A SW-x-IN -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    -A SW-x-IN -d 172.18.0.1/32 -p tcp --dport 3233 -j ACCEPT
    -A SW-x-IN -p tcp -j REJECT --reject-with tcp-reset
    -A SW-x-IN -j REJECT --reject-with icmp-port-unreachable
    -A SW-x-FWD -d 169.254.0.0/16 -p tcp -j REJECT --reject-with tcp-reset
    -A SW-x-FWD -d 169.254.0.0/16 -j REJECT --reject-with icmp-net-prohibited
    COMMIT
    <BLANKLINE>
    """
    lines = ["*filter", f":{chain}-IN - [0:0]", f":{chain}-FWD - [0:0]",
             f"-A {chain}-IN -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
             f"-A {chain}-IN -d {gateway}/32 -p tcp --dport {ingress_port} -j ACCEPT",
             f"-A {chain}-IN -p tcp -j REJECT --reject-with tcp-reset",
             f"-A {chain}-IN -j REJECT --reject-with icmp-port-unreachable"]
    for cidr in deny:
        lines += [f"-A {chain}-FWD -d {cidr} -p tcp -j REJECT --reject-with tcp-reset",
                  f"-A {chain}-FWD -d {cidr} -j REJECT --reject-with icmp-net-prohibited"]
    return "\n".join([*lines, "COMMIT", ""])


def jumps(bridge: str, chain: str) -> list[tuple[str, list[str]]]:
    """(built-in chain, rule) pairs that send the bridge's traffic through our chains."""
    return [("INPUT", ["-i", bridge, "-j", f"{chain}-IN"]), ("DOCKER-USER", ["-i", bridge, "-j", f"{chain}-FWD"])]


def _ipt(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True, check=False)


def _wall(net: ActionNetwork, chain: str, ingress_port: int, deny: tuple[str, ...]) -> None:
    res = subprocess.run(["iptables-restore", "-w", "5", "--noflush"], input=wall_rules(chain, net.gateway,
                         ingress_port, deny), capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"iptables-restore: {res.stderr.strip()}")
    for parent, rule in jumps(net.bridge, chain):
        if parent == "DOCKER-USER" and _ipt("-S", parent).returncode != 0:
            parent = "FORWARD"  # dockerd runs without its own chains: our rule goes first in FORWARD
        if _ipt("-C", parent, *rule).returncode != 0:
            res = _ipt("-I", parent, "1", *rule)
            if res.returncode != 0:
                raise RuntimeError(f"iptables -I {parent}: {res.stderr.strip()}")


def _network(client: docker.DockerClient, name: str, bridge: str, prefix: str, home: str = "") -> ActionNetwork:
    try:
        net = client.networks.get(name)
    except docker.errors.NotFound:
        try:
            net = client.networks.create(name, driver="bridge", labels={LABEL: prefix, HOME_LABEL: home}, options={
                "com.docker.network.bridge.enable_icc": "false",
                "com.docker.network.bridge.name": bridge,
            })
        except docker.errors.APIError as e:
            if e.status_code != 409:  # 409: another component made it a moment ago
                raise
        net = client.networks.get(name)
    cfg = net.attrs["IPAM"]["Config"][0]
    opts = net.attrs.get("Options") or {}
    if opts.get("com.docker.network.bridge.enable_icc") != "false":
        raise RuntimeError(f"docker network {name} exists without enable_icc=false; remove it")
    return ActionNetwork(name, opts.get("com.docker.network.bridge.name", bridge), cfg["Gateway"], cfg["Subnet"])


def ensure(settings: Settings, deny: tuple[str, ...] = DENY) -> ActionNetwork:
    """Make (or find) the stack's action network and (re)apply its wall; raises if either fails."""
    name, bridge, chain = names(settings.prefix)
    if shutil.which("iptables") is None or shutil.which("iptables-restore") is None:
        raise RuntimeError("iptables is not installed")  # checked first: no network is made that has no wall
    client = docker.from_env()
    try:
        net = _network(client, name, bridge, settings.prefix, str(settings.home))
    finally:
        client.close()
    # The rules must go where the bridge is: made in an invoker pod beside the node's dockerd, they wall off nothing.
    if not Path(f"/sys/class/net/{net.bridge}").exists():
        raise RuntimeError(f"bridge {net.bridge} is not in this network namespace; cannot wall it off")
    _wall(net, chain, settings.nginx_port, METADATA + tuple(deny))
    return net


def find(settings: Settings) -> ActionNetwork | None:
    """The stack's action network if it exists (for rendering nginx's listen on its gateway)."""
    name, bridge, _ = names(settings.prefix)
    try:
        client = docker.from_env()
    except docker.errors.DockerException:
        return None
    try:
        return _network(client, name, bridge, settings.prefix)
    except (docker.errors.NotFound, docker.errors.APIError, RuntimeError, KeyError, IndexError):
        return None
    finally:
        client.close()


def stacks() -> list[tuple[str, str, str]]:
    """(prefix, state dir, creation time as Docker writes it) of every action network on this Docker."""
    client = docker.from_env()
    try:
        nets = client.networks.list(filters={"label": LABEL})
        return [(n.attrs["Labels"][LABEL], n.attrs["Labels"].get(HOME_LABEL, ""), n.attrs["Created"]) for n in nets]
    finally:
        client.close()


def remove(prefix: str) -> None:
    """Take down a stack's wall and network (when it stops; its containers are gone by then)."""
    name, bridge, chain = names(prefix)
    for parent, rule in jumps(bridge, chain):
        for p in (parent, "FORWARD"):
            while _ipt("-C", p, *rule).returncode == 0:
                _ipt("-D", p, *rule)
    for c in (f"{chain}-IN", f"{chain}-FWD"):
        _ipt("-F", c)
        _ipt("-X", c)
    with contextlib.suppress(docker.errors.DockerException):
        client = docker.from_env()
        try:
            client.networks.get(name).remove()
        except docker.errors.NotFound:
            pass
        finally:
            client.close()
