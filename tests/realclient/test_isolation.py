"""(a) Two nodes of namespace A exchange HTTP both ways; namespace B's nodes work among
themselves but cannot reach A's nodes (or be reached by them), and the API keeps the
namespaces' node lists apart."""

import unittest

from harness import RealClientTest, assert_unreachable, wait_http


class NamespaceIsolationTest(RealClientTest):
    TIMEOUT = 360

    def test_same_namespace_talks_other_namespace_is_isolated(self):
        self.start_server()
        api = self.make_org("org-isolation")
        api.create_namespace("ns-a")
        api.create_namespace("ns-b")

        a1, ip_a1 = self.join(api, "ns-a", "node-a1")
        a2, ip_a2 = self.join(api, "ns-a", "node-a2")
        wait_http(a1, ip_a2, "hello from node-a2")
        wait_http(a2, ip_a1, "hello from node-a1")

        b1, ip_b1 = self.join(api, "ns-b", "node-b1")
        b2, ip_b2 = self.join(api, "ns-b", "node-b2")
        # B works on its own, so the failures below are isolation, not a broken B.
        wait_http(b1, ip_b2, "hello from node-b2")

        nodes_a, nodes_b = api.nodes("ns-a"), api.nodes("ns-b")
        self.assertEqual(sorted(n["name"] for n in nodes_a), ["node-a1", "node-a2"])
        self.assertEqual(sorted(n["name"] for n in nodes_b), ["node-b1", "node-b2"])
        self.assertFalse({n["id"] for n in nodes_a} & {n["id"] for n in nodes_b}, "node ids shared across namespaces")

        # Namespaces may reuse addresses, so only an answer from A's node itself is a breach.
        for ip, name in ((ip_a1, "node-a1"), (ip_a2, "node-a2")):
            assert_unreachable(b1, ip, forbidden=f"hello from {name}")
        assert_unreachable(a1, ip_b1, forbidden="hello from node-b1")
        assert_unreachable(a2, ip_b2, forbidden="hello from node-b2")

        # Still fine inside A afterwards.
        wait_http(a1, ip_a2, "hello from node-a2")


if __name__ == "__main__":
    unittest.main()
