"""(hub e) Two client generations in one tailnet, every packet through tenscale's DERP.

The pinned `tailscaled` (the newer release) and tsnet 1.90.9 inside Caddy (the older one) join
one namespace with direct UDP turned off (`TS_DEBUG_NEVER_DIRECT_UDP=1`), over TLS DERP as in
production; `tailscale ping` reports the DERP path, and TCP crosses both ways: the hub reads
the Caddy node's HTTP answer with `tailscale nc`, and the Caddy node reaches a service behind
the hub (userspace networking forwards a tailnet port to the hub's own loopback)."""

import unittest

from harness import log, wait_for, wait_http, wait_node_online
from hubtest import HubTest, serve_greeting, wait_peer_hostnames, wait_ping

NO_UDP = {"TS_DEBUG_NEVER_DIRECT_UDP": "1"}


class HubGenerationsTest(HubTest):

    def test_newer_tailscaled_and_older_tsnet_over_derp(self):
        self.start_server(derp="tls")
        api = self.make_org("org-gen")
        api.create_namespace("alice")

        hub = self.daemon("hub", env=NO_UDP)
        hub_ip = self.up(hub, self.hub_key(api, "alice", "1"))
        old, old_ip = self.join(api, "alice", "old-tsnet", env=NO_UDP)
        version = hub.run("version").stdout.split()[0]
        log(f"newer client {version} at {hub_ip}; tsnet 1.90.9 at {old_ip}")

        peers = wait_peer_hostnames(hub, {"old-tsnet"})
        self.assertEqual(peers["old-tsnet"].get("Relay"), "tenscale")
        out = wait_ping(hub, old_ip)
        self.assertIn("via DERP(tenscale)", out)

        # Newer -> older: an HTTP request through `tailscale nc` on the hub.
        greeting = b"hello from old-tsnet"

        def http_through_nc():
            got = hub.nc(old_ip, 80, send=b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", until=greeting, seconds=15)
            if greeting in got:
                return got
            raise AssertionError(f"read {got[-200:]!r}")
        wait_for(http_through_nc, 60, "hub -> old-tsnet:80 through tailscale nc", interval=1)

        # Older -> newer: the Caddy node's proxy reaches a service behind the hub.
        port = serve_greeting(b"hello from behind the hub")
        wait_http(old, f"{hub_ip}:{port}", "hello from behind the hub")

        node = wait_node_online(api, "alice", "hub")
        self.assertEqual(node.get("client_version", "").split("-")[0], version.split("-")[0])


if __name__ == "__main__":
    unittest.main()
