"""(hub a) The CLI hub joins as users run it — `tailscale up --login-server=… --authkey=…`
with a single-use, one-year key tagged `tag:cli` and `tag:hub-<id>` — and `tailscale status
--json` lists exactly the peers of its namespace under their MagicDNS names; the hub of
another namespace never appears, and `tailscale ping` to its address fails."""

import unittest

from harness import wait_node_online
from hubtest import BASE_DOMAIN, HubTest, wait_peer_hostnames, wait_ping


class HubJoinTest(HubTest):

    def test_hub_sees_exactly_its_namespace(self):
        self.start_server()
        api = self.make_org("org-hub")
        api.create_namespace("alice")
        api.create_namespace("bob")

        hub = self.daemon("hub")
        self.up(hub, self.hub_key(api, "alice", "1"))
        laptop = self.daemon("laptop")
        laptop_ip = self.up(laptop, api.create_key("alice", ephemeral=True))

        # Bob's hub gets an address alice's namespace does not hold (index 3), so a ping to it
        # from alice's hub can only succeed by crossing namespaces.
        other = self.daemon("bob-hub")
        self.burn_addresses(api, "bob", other, 2)
        other_ip = self.up(other, self.hub_key(api, "bob", "2"), "bob-hub")

        node = wait_node_online(api, "alice", "hub")
        self.assertEqual(sorted(node["tags"]), ["tag:cli", "tag:hub-1"])
        self.assertEqual(hub.status()["Self"].get("Tags"), ["tag:cli", "tag:hub-1"])

        peers = wait_peer_hostnames(hub, {"laptop"})
        self.assertEqual(peers["laptop"]["DNSName"], f"laptop.alice.{BASE_DOMAIN}.")
        self.assertIn(laptop_ip, peers["laptop"]["TailscaleIPs"])
        self.assertEqual(hub.status()["Self"]["DNSName"], f"hub.alice.{BASE_DOMAIN}.")
        wait_peer_hostnames(laptop, {"hub"})
        wait_peer_hostnames(other, set())

        wait_ping(hub, laptop_ip)
        res = hub.ping(other_ip, timeout_s=5, count=2)
        self.assertNotEqual(res.returncode, 0, f"alice's hub pinged bob's hub:\n{res.stdout}")
        self.assertNotIn("pong", res.stdout)
        res = other.ping(laptop_ip, timeout_s=5, count=2)
        self.assertNotEqual(res.returncode, 0, f"bob's hub pinged alice's laptop:\n{res.stdout}")
        # And after all that, still only its own namespace.
        wait_peer_hostnames(hub, {"laptop"})


if __name__ == "__main__":
    unittest.main()
