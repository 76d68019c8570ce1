"""A test host in a network namespace the test makes: the only "outside world" an action's network test may reach.

It lives on a /30 of 198.18.0.0/15 (RFC 2544's benchmarking range, never routed on the internet), behind a veth pair
to the host, and serves HTTP: GET answers a token, POST records its body (an action reports to it out of band).
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SERVER = r"""
import socketserver, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

token, out = sys.argv[3], sys.argv[4]

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _reply(self, body):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._reply(token.encode())

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with open(out, "ab") as f:
            f.write(data + b"\n")
        self._reply(b"ok")

class S(ThreadingHTTPServer):
    def server_bind(self):  # HTTPServer's own looks its name up in DNS, which a test host has none of
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "nethost", self.server_address[1]

S((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""


@dataclass(frozen=True)
class NetHost:
    ip: str
    port: int
    token: str  # what GET answers
    inbox: Path  # POSTed bodies, one a line

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}/"

    def received(self) -> list[str]:
        return self.inbox.read_text().splitlines() if self.inbox.exists() else []


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _used_subnets() -> set[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    return {w.rsplit(".", 1)[0] for w in out.split() if w.startswith("198.18.")}


@contextlib.contextmanager
def net_host(tmp: Path) -> Iterator[NetHost]:
    tag = secrets.token_hex(3)
    ns, host_if, ns_if = f"swt-{tag}", f"swt{tag}h", f"swt{tag}n"
    used = _used_subnets()
    third = next(n for n in (secrets.randbelow(256) for _ in range(100)) if f"198.18.{n}" not in used)
    host_ip, ip = f"198.18.{third}.1", f"198.18.{third}.2"
    proc: subprocess.Popen[bytes] | None = None
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        for args in (["addr", "add", f"{ip}/30", "dev", ns_if], ["link", "set", ns_if, "up"],
                     ["link", "set", "lo", "up"], ["route", "add", "default", "via", host_ip]):
            _ip("netns", "exec", ns, "ip", *args)
        token, inbox = secrets.token_hex(8), tmp / f"inbox-{tag}"
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, ip, "8080", token,
                                 str(inbox)])
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection((ip, 8080), timeout=0.5):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"test host {ip} did not come up")
            time.sleep(0.05)
        yield NetHost(ip, 8080, token, inbox)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes the veth pair with it
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
