"""(hub d) Tailscale's own Rust client, tailscale-rs (crate `tailscale` 0.6.1, in the
workspace's `tsrs-probe` test binary), joins with a pre-auth key and exchanges TCP with a real
`tailscaled` through tenscale, both ways.

tailscale-rs fetches /key and dials /ts2021 over plain HTTP with absolute-form request targets
(`POST http://host:port/ts2021`), asks for no map compression, and speaks DERP only over TLS
(`POST /derp`): the server runs with plain control and DERP behind a TLS front
(`derp="tls-front"`, InsecureForTests, which the probe honours through ts_control's
`insecure-derp` feature)."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import unittest
from pathlib import Path

from harness import HERE, log, tail, wait_for, wait_node_online
from hubtest import HubTest, serve_greeting


def probe_binary() -> str:
    path = os.environ.get("TSRS_PROBE") or str(HERE.parent.parent / "target" / "debug" / "tsrs-probe")
    if not os.access(path, os.X_OK):
        raise AssertionError(f"no tsrs-probe binary at {path} (cargo build -p tenscale-tsrs-probe)")
    return path


class TsrsProbe:
    """One `tsrs-probe` process; its stdout lines are collected as they come."""

    def __init__(self, workdir: Path, control_url: str, auth_key: str, hostname: str, *mode: str):
        self.dir = Path(workdir)
        (self.dir / "state").mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "tsrs-probe.log"
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        argv = [probe_binary(), "--control-url", control_url, "--auth-key", auth_key,
                "--hostname", hostname, "--state-dir", str(self.dir / "state"), *mode]
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=logf, stdin=subprocess.DEVNULL,
                                         text=True, env={**os.environ, "RUST_LOG": os.environ.get("TSRS_LOG", "info")},
                                         start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        log(f"tsrs-probe {hostname}: pid {self.proc.pid} ({' '.join(mode)})")

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, prefix: str, timeout: float = 120) -> str:
        """The rest of the next stdout line starting with `prefix` (earlier lines are kept)."""
        try:
            while True:
                line = self.lines.get(timeout=timeout)
                self.seen.append(line)
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
        except queue.Empty:
            raise AssertionError(f"tsrs-probe printed no {prefix!r} within {timeout:.0f}s "
                                 f"(rc={self.proc.poll()}); stdout so far {self.seen}") from None

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc.stdout.close()

    def diagnostics(self, lines: int = 80) -> str:
        return f"----- tsrs-probe rc={self.proc.poll()} stdout={self.seen} -----\n{tail(self.log_path, lines)}"


class TailscaleRsTest(HubTest):

    def probe(self, api, name: str, *mode: str) -> TsrsProbe:
        key = api.create_key("alice", ephemeral=True)
        p = TsrsProbe(self.tmp / f"tsrs-{name}", self.server.url, key, name, *mode)
        self.daemons.append(p)
        return p

    def test_tailscale_rs_exchanges_tcp_with_tailscaled(self):
        self.start_server(derp="tls-front")
        api = self.make_org("org-tsrs")
        api.create_namespace("alice")
        hub = self.daemon("hub")
        hub_ip = self.up(hub, self.hub_key(api, "alice", "1"))
        port = serve_greeting(b"hello from behind the hub")

        # tailscale-rs dials a service behind the hub.
        dialer = self.probe(api, "rs-dialer", "dial", f"{hub_ip}:{port}", "hi")
        rs_ip = dialer.next_line("tailnet-ipv4")
        node = wait_node_online(api, "alice", "rs-dialer")
        self.assertIn(rs_ip, node["addresses"])
        reply = dialer.next_line("reply")
        self.assertIn("hello from behind the hub", reply)
        self.assertEqual(dialer.proc.wait(30), 0)

        # The hub dials a tailscale-rs listener: the line comes back.
        listener = self.probe(api, "rs-listener", "listen", "7000")
        listener_ip = listener.next_line("tailnet-ipv4")
        listener.next_line("listening")
        wait_for(lambda: hub.peer_named("rs-listener"), 60, "rs-listener among the hub's peers")
        got = hub.nc(listener_ip, 7000, send=b"ping through tenscale\n", until=b"ping through tenscale\n",
                     seconds=60)
        self.assertIn(b"ping through tenscale\n", got)
        self.assertEqual(listener.next_line("got", timeout=10), "ping through tenscale")
        self.assertGreater(self.server.front.connections, 0, "nothing crossed the TLS front to DERP")


if __name__ == "__main__":
    unittest.main()
