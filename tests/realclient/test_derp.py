"""(b) With direct UDP disabled in the clients (TS_DEBUG_NEVER_DIRECT_UDP=1) every packet
crosses our DERP relay: once over TLS (self-signed cert, InsecureForTests in the DERP map)
and once over plain HTTP (TS_DEBUG_USE_DERP_HTTP=1 in the clients)."""

import re
import unittest

from harness import RealClientTest, log, wait_http

DERP_ONLY = {"TS_DEBUG_NEVER_DIRECT_UDP": "1"}


class DerpRelayTest(RealClientTest):
    TIMEOUT = 300

    def _exchange_over_derp(self, derp: str):
        server = self.start_server(derp=derp)
        self.assertEqual("TS_DEBUG_USE_DERP_HTTP" in server.client_env(), derp == "plain")
        api = self.make_org(f"org-derp-{derp}")
        api.create_namespace("ns-a")
        a1, ip_a1 = self.join(api, "ns-a", "node-a1", env=DERP_ONLY)
        a2, ip_a2 = self.join(api, "ns-a", "node-a2", env=DERP_ONLY)
        for _ in range(3):  # a few rounds both ways, not one lucky packet
            wait_http(a1, ip_a2, "hello from node-a2")
            wait_http(a2, ip_a1, "hello from node-a1")
        for node in (a1, a2):
            hits = sorted(set(re.findall(r"derp-\d+ connected", node.all_log_text())))
            log(f"{node.name} DERP evidence in client log: {hits or 'none found (not asserted)'}")

    def test_derp_over_tls(self):
        self._exchange_over_derp("tls")

    def test_derp_over_plain_http(self):
        self._exchange_over_derp("plain")


if __name__ == "__main__":
    unittest.main()
