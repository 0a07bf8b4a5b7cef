"""(issue 14, items 4c and 5) Three instances behind HAProxy, on one PostgreSQL and one Redis,
with real `tailscaled`s forced onto DERP (TS_DEBUG_NEVER_DIRECT_UDP=1).

alice's hub joins through instance 1's frontend and her browser node through instance 2's, so
every packet between them crosses the DERP mesh; HTTP and Tailscale SSH between them work. A
node of another namespace on instance 3 reaches neither. Then instance 1 is killed (-9): the
hub reconnects through the load balancer to a survivor and traffic resumes within 30 s, and
the tables afterwards hold each node, key use and address exactly once."""

import time
import unittest

from cluster import Cluster
from harness import Api, log, wait_for
from hubtest import HubTest, LocalUser, serve_greeting, wait_peer_hostnames, wait_ping
from tailscaled import SSH_BANNER, Tailscaled
from test_hub_ssh import WITH_SSH

DERP_ONLY = {"TS_DEBUG_NEVER_DIRECT_UDP": "1"}
GREETING = b"hello from the hub through the mesh"


class LoadBalancerTest(HubTest):
    TIMEOUT = 600

    def test_nodes_on_different_instances_talk_through_the_mesh_and_survive_a_crash(self):
        cluster = Cluster(self.tenscale, self.tmp / "cluster", size=3)
        self.addCleanup(cluster.stop)
        self.extra_diagnostics.append(cluster.diagnostics)
        cluster.start()
        self.server = cluster.instances[0]  # for the harness's API and CLI helpers
        api = Api(cluster.instances[0])
        api.create_org("org-lb")
        api.create_namespace("alice")
        api.create_namespace("mallory")
        api.put_namespace_policy("alice", WITH_SSH)

        hub = self.pinned_daemon(cluster, 0, "hub")
        hub_ip = self.join(cluster, 0, hub, self.hub_key(api, "alice", "1"))
        hub.set_ssh()
        browser = self.pinned_daemon(cluster, 1, "browser")
        browser_ip = self.join(cluster, 1, browser, api.create_key("alice", ephemeral=True, tags=["tag:browser"]))
        intruder = self.pinned_daemon(cluster, 2, "intruder")
        self.burn_addresses_at(cluster, api, intruder)
        self.join(cluster, 2, intruder, api.create_key("mallory", ephemeral=True, tags=["tag:browser"]))
        wait_peer_hostnames(browser, {"hub"})
        wait_peer_hostnames(intruder, set())

        # Each node's DERP connection is on its own instance.
        for n in (0, 1, 2):
            wait_for(lambda n=n: cluster.metric(n, "tenscale_derp_connections") >= 1, 60,
                     f"a DERP client on instance {n + 1}")

        wait_ping(browser, hub_ip, timeout=90)
        port = serve_greeting(GREETING)
        self.wait_greeting(browser, hub_ip, port, 90)
        forwarded = sum(cluster.metric(n, "tenscale_derp_packets_forwarded_total") for n in (0, 1, 2))
        log(f"packets forwarded through the mesh so far: {forwarded}")
        self.assertGreater(forwarded, 0, "traffic between instance 1 and 2 went through the mesh")

        user = LocalUser()
        self.addCleanup(user.remove)
        wait_for(lambda: browser.peer_named("hub").get("sshHostKeys")
                 or browser.peer_named("hub").get("SSH_HostKeys"), 60, "the hub's SSH host keys")
        res = wait_for(lambda: self.ssh_ran(browser, user.name, "hub"), 90, "tailscale ssh to the hub", interval=2)
        log(f"ssh {user.name}@hub through the mesh: {res.stdout.strip()!r}")

        # Another namespace, on the third instance: nothing gets through.
        self.assertNotIn(SSH_BANNER, intruder.nc(hub_ip, 22, seconds=10))
        self.assertNotIn(GREETING, intruder.nc(hub_ip, port, send=b"GET / HTTP/1.0\r\n\r\n", until=GREETING,
                                               seconds=8))
        self.assertNotIn(b"SSH", intruder.nc(browser_ip, 22, seconds=5))

        # kill -9 of the hub's instance: it reconnects through the load balancer.
        nodes_before = self.table_rows(cluster)
        cluster.instances[0].kill()
        killed = time.monotonic()
        wait_ping(browser, hub_ip, timeout=30)
        resumed = time.monotonic() - killed
        log(f"traffic to the hub resumed {resumed:.1f} s after its instance was killed")
        self.assertLessEqual(resumed, 30)
        self.wait_greeting(browser, hub_ip, port, 30)
        self.assertEqual(self.table_rows(cluster), nodes_before, "nodes, key uses or addresses changed")

    # -- helpers

    def pinned_daemon(self, cluster: Cluster, n: int, name: str) -> Tailscaled:
        d = Tailscaled(self.tmp / f"tailscaled-{name}", name,
                       env={**cluster.instances[n].client_env(), **DERP_ONLY})
        self.daemons.append(d)
        return d.start()

    def join(self, cluster: Cluster, n: int, d: Tailscaled, key: str) -> str:
        d.up(cluster.front_url(n), key, d.name)
        return d.ipv4()

    def burn_addresses_at(self, cluster: Cluster, api: Api, d: Tailscaled) -> None:
        """As HubTest.burn_addresses, through instance 3's frontend: mallory's node then sits
        at an address alice's namespace does not use."""
        for _ in range(2):
            self.join(cluster, 2, d, api.create_key("mallory", ephemeral=True))
            d.logout()
            wait_for(lambda: d.backend_state() == "NeedsLogin", 30, f"{d.name} logged out")

    @staticmethod
    def wait_greeting(client: Tailscaled, ip: str, port: int, timeout: float) -> None:
        def answered():
            return GREETING in client.nc(ip, port, send=b"GET / HTTP/1.0\r\n\n", until=GREETING, seconds=10)
        wait_for(answered, timeout, f"HTTP from {client.name} to {ip}:{port}", interval=1)

    @staticmethod
    def ssh_ran(browser: Tailscaled, user: str, host: str):
        res = browser.ssh(user, host, "id -un")
        if res.returncode == 0 and user in res.stdout:
            return res
        raise AssertionError(f"rc={res.returncode} err={res.stderr[-300:]!r}")

    @staticmethod
    def table_rows(cluster: Cluster) -> str:
        """Nodes (with keys and addresses) and pre-auth key uses, as the database holds them."""
        alice = "(SELECT id FROM namespaces WHERE name = 'alice')"
        nodes = cluster.postgres.query(
            f"SELECT id, node_key, machine_key, ipv4, ipv6 FROM nodes WHERE namespace_id = {alice} ORDER BY id")
        uses = cluster.postgres.query(
            f"SELECT id, used_count FROM preauth_keys WHERE namespace_id = {alice} ORDER BY id")
        return nodes + "\n--\n" + uses


if __name__ == "__main__":
    unittest.main()
