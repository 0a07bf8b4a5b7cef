"""(hub c) A node's life through the real CLI.

- `tailscale logout` on an ephemeral node removes it from the hub's `tailscale status` within
  seconds, and from `GET /v1/namespaces/{name}/nodes`;
- `POST …/nodes/{id}/expire` makes that node's `tailscale status` say it must log in again,
  and its peers drop it;
- a SIGKILL and restart of tenscale under running `tailscaled`s: both come back without
  re-authenticating, and SSH works again."""

import unittest

from harness import wait_for, wait_node_gone, wait_node_online
from hubtest import HubTest, wait_peer_hostnames, wait_ping

POLICY = """{
  "tagOwners": {"tag:browser": [], "tag:cli": [], "tag:hub-1": []},
  "acls": [{"action": "accept", "src": ["tag:browser"], "dst": ["tag:cli:*"]}],
  "ssh": [{"action": "accept", "src": ["tag:browser"], "dst": ["tag:cli"], "users": ["autogroup:nonroot"]}],
}
"""


class HubLifecycleTest(HubTest):

    def test_logout_removes_an_ephemeral_node(self):
        self.start_server()
        api = self.make_org("org-logout")
        api.create_namespace("alice")
        hub = self.daemon("hub")
        self.up(hub, self.hub_key(api, "alice", "1"))
        visitor = self.daemon("visitor")
        self.up(visitor, api.create_key("alice", ephemeral=True))
        wait_node_online(api, "alice", "visitor")
        wait_peer_hostnames(hub, {"visitor"})

        visitor.logout()
        wait_peer_hostnames(hub, set(), timeout=20)
        wait_node_gone(api, "alice", "visitor", timeout=20)
        self.assertEqual(visitor.backend_state(), "NeedsLogin")

    def test_expire_asks_the_node_to_log_in_again(self):
        self.start_server()
        api = self.make_org("org-expire")
        api.create_namespace("alice")
        hub = self.daemon("hub")
        hub_ip = self.up(hub, self.hub_key(api, "alice", "1"))
        laptop = self.daemon("laptop")
        laptop_ip = self.up(laptop, api.create_key("alice", ephemeral=False))
        wait_peer_hostnames(hub, {"laptop"})
        wait_ping(laptop, hub_ip)

        node = wait_node_online(api, "alice", "laptop")
        expired = api.expire_node("alice", node["id"])
        self.assertTrue(expired["expired"], expired)

        def needs_login():
            laptop.check_alive()
            st = laptop.status()
            if st.get("BackendState") == "NeedsLogin" or st.get("Self", {}).get("Expired"):
                return st
            raise AssertionError(f"BackendState={st.get('BackendState')} health={st.get('Health')}")
        st = wait_for(needs_login, 60, "laptop's status to say it must log in again")
        self.assertTrue(st.get("BackendState") == "NeedsLogin" or st["Self"].get("Expired"), st)
        # The hub drops it: gone from its peers, or listed as expired and unreachable.
        wait_for(lambda: (p := hub.peer_named("laptop")) is None or p.get("Expired"), 60,
                 "the hub to drop the expired laptop")
        res = hub.ping(laptop_ip, timeout_s=5, count=2)
        self.assertNotEqual(res.returncode, 0, f"the hub still pings the expired laptop:\n{res.stdout}")

    def test_server_sigkill_and_restart_under_running_daemons(self):
        self.start_server()
        api = self.make_org("org-restart")
        api.create_namespace("alice")
        api.put_namespace_policy("alice", POLICY)
        user, hub, hub_ip, browser, _ = self.ssh_pair(api, "alice", browser_ephemeral=False)
        wait_peer_hostnames(browser, {"hub"})
        before = {n["name"]: n["id"] for n in api.nodes("alice")}

        def ssh_works():
            res = browser.ssh(user.name, hub_ip, "echo still-here")
            if res.returncode == 0 and "still-here" in res.stdout:
                return True
            raise AssertionError(f"rc={res.returncode} err={res.stderr.strip()[-300:]!r}")
        wait_for(ssh_works, 60, "ssh before the restart", interval=2)

        pids = (hub.proc.pid, browser.proc.pid)
        self.server.restart(hard=True)
        self.server.wait_healthy()
        wait_node_online(api, "alice", "hub", timeout=120)
        wait_node_online(api, "alice", "browser", timeout=120)
        wait_for(ssh_works, 120, "ssh after the restart", interval=2)

        self.assertEqual({n["name"]: n["id"] for n in api.nodes("alice")}, before, "nodes were re-created")
        self.assertEqual((hub.proc.pid, browser.proc.pid), pids)
        for d in (hub, browser):
            self.assertEqual(d.backend_state(), "Running", f"{d.name} had to log in again")


if __name__ == "__main__":
    unittest.main()
