"""(e) Ephemeral nodes go away: one killed with SIGKILL (no logout) disappears from the API
after TENSCALE_EPHEMERAL_TIMEOUT (5 s here); one stopped gracefully (tsnet logs out) too.
A non-ephemeral node killed at the same time stays listed, so the server does not simply
drop every node that goes offline."""

import time
import unittest

from harness import RealClientTest, log, wait_for, wait_http, wait_node_gone


class EphemeralNodeTest(RealClientTest):
    TIMEOUT = 300

    def test_killed_ephemeral_node_is_collected_persistent_one_stays(self):
        self.start_server()
        api = self.make_org("org-ephemeral")
        api.create_namespace("ns-a")
        eph, ip_eph = self.join(api, "ns-a", "node-eph")
        keep, ip_keep = self.join(api, "ns-a", "node-keep", ephemeral=False)
        watcher, _ = self.join(api, "ns-a", "node-watch")
        wait_http(watcher, ip_eph, "hello from node-eph")
        wait_http(watcher, ip_keep, "hello from node-keep")

        eph.kill()
        keep.kill()
        t0 = time.monotonic()
        wait_node_gone(api, "ns-a", "node-eph", timeout=90)
        log(f"node-eph gone {time.monotonic() - t0:.1f}s after SIGKILL")
        # The killed persistent node must go offline, and stay listed for more than another
        # full ephemeral timeout (observed continuously, not slept through).
        wait_for(lambda: (api.find_node("ns-a", "node-keep") or {}).get("online") is False, 90,
                 "node-keep reported offline")
        until = time.monotonic() + 12
        while time.monotonic() < until:
            names = {n["name"] for n in api.nodes("ns-a")}
            self.assertIn("node-keep", names, "non-ephemeral node was removed")
            self.assertIn("node-watch", names, "live ephemeral node was removed")
            self.assertNotIn("node-eph", names, "collected node came back")
            time.sleep(1)

    def test_stopped_ephemeral_node_is_removed(self):
        self.start_server()
        api = self.make_org("org-ephemeral-stop")
        api.create_namespace("ns-a")
        eph, _ = self.join(api, "ns-a", "node-eph")
        eph.stop()
        wait_node_gone(api, "ns-a", "node-eph", timeout=60)


if __name__ == "__main__":
    unittest.main()
