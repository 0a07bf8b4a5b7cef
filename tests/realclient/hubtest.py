"""What the hub scenarios share: a test base that starts real `tailscaled`s, and the waits
they need. The scenarios themselves are the test_hub_*.py files."""

from __future__ import annotations

import pwd
import secrets
import socket
import subprocess
import threading
from typing import Any

from harness import Api, RealClientTest, free_port, log, wait_for
from tailscaled import Tailscaled

BASE_DOMAIN = "tenscale.internal"  # the server's default TENSCALE_BASE_DOMAIN
ONE_YEAR = 365 * 86400


class HubTest(RealClientTest):
    """RealClientTest plus `tailscaled`s; each one is stopped (and its log dumped on
    failure) by the base class's tearDown."""

    TIMEOUT = 420

    def daemon(self, name: str, env: dict[str, str] | None = None) -> Tailscaled:
        """A started `tailscaled` (logged out) for this test's server."""
        assert self.server is not None
        d = Tailscaled(self.tmp / f"tailscaled-{name}", name, env={**self.server.client_env(), **(env or {})})
        self.daemons.append(d)
        return d.start()

    def hub_key(self, api: Api, ns: str, hub_id: str) -> str:
        """What an app backend gives a user's hub: single-use, one year, `tag:cli` + `tag:hub-<id>`."""
        return api.create_key(ns, reusable=False, ephemeral=False,
                              tags=["tag:cli", f"tag:hub-{hub_id}"], expires_in=ONE_YEAR)

    def up(self, d: Tailscaled, key: str, hostname: str | None = None) -> str:
        """`tailscale up` against this test's server; returns the node's IPv4 address."""
        assert self.server is not None
        d.up(self.server.url, key, hostname or d.name)
        return d.ipv4()

    def ssh_pair(self, api: Api, ns: str, browser_ephemeral: bool = True) -> tuple["LocalUser", Tailscaled, str, Tailscaled, str]:
        """What an SSH scenario starts from: a local account, the namespace's hub (tagged key,
        Tailscale SSH on) and a `tag:browser` node; returns (user, hub, its IPv4, browser, its IPv4)."""
        user = LocalUser()
        self.addCleanup(user.remove)
        hub = self.daemon("hub")
        hub_ip = self.up(hub, self.hub_key(api, ns, "1"))
        hub.set_ssh()
        browser = self.daemon("browser")
        browser_ip = self.up(browser, api.create_key(ns, ephemeral=browser_ephemeral, tags=["tag:browser"]))
        return user, hub, hub_ip, browser, browser_ip

    def burn_addresses(self, api: Api, ns: str, d: Tailscaled, count: int) -> None:
        """Join and log out `count` times with ephemeral keys, so that `d`'s next join gets an
        address index above `count`.

        Namespaces are separate tailnets and each counts its addresses from 100.64.0.1, so two
        namespaces hold the same addresses. A test that asks "can this node reach that one of
        another namespace" first moves the other node to an address its own namespace does
        not use; otherwise a reach could be to the namespace's own node of that address."""
        for _ in range(count):
            self.up(d, api.create_key(ns, ephemeral=True))
            d.logout()
            wait_for(lambda: d.backend_state() == "NeedsLogin", 30, f"{d.name} logged out")


def wait_peer_hostnames(d: Tailscaled, want: set[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
    """Wait until `tailscale status --json` on `d` lists exactly the peers `want` (by HostName)."""
    def exact():
        d.check_alive()
        peers = {p.get("HostName"): p for p in d.peers()}
        if set(peers) == want:
            return (peers,)  # truthy even when there are none
        raise AssertionError(f"peers {sorted(peers)}")
    return wait_for(exact, timeout, f"{d.name}'s peers to be exactly {sorted(want)}")[0]


def wait_ping(d: Tailscaled, target: str, timeout: float = 60) -> str:
    """Wait until `tailscale ping TARGET` from `d` gets a pong; returns its output."""
    def pong():
        d.check_alive()
        res = d.ping(target)
        if res.returncode == 0 and "pong from" in res.stdout:
            return res.stdout
        raise AssertionError((res.stdout + res.stderr).strip()[-300:])
    out = wait_for(pong, timeout, f"{d.name}: tailscale ping {target}", interval=1)
    log(f"{d.name} -> {target}: {out.strip().splitlines()[-1]}")
    return out


class LocalUser:
    """A throw-away account on this machine, for SSH sessions on the hub (which runs here)."""

    def __init__(self) -> None:
        self.name = f"tshub{secrets.token_hex(3)}"
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", self.name],
                       check=True, capture_output=True, timeout=60)
        self.uid = pwd.getpwnam(self.name).pw_uid
        log(f"created local user {self.name} (uid {self.uid})")

    def remove(self) -> None:
        subprocess.run(["userdel", "--remove", self.name], capture_output=True, timeout=60)


def serve_greeting(text: bytes) -> int:
    """A loopback TCP service answering every connection with an HTTP response carrying
    `text`; returns its port. Runs on daemon threads until the test process ends."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", free_port()))
    sock.listen(16)

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text))
            except OSError:
                pass

    def loop() -> None:
        while True:
            conn, _ = sock.accept()
            threading.Thread(target=answer, args=(conn,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return sock.getsockname()[1]
