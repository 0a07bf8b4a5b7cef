"""(f) Policy: `tag:browser -> tag:cli:*` lets the browser node reach the CLI node and
not the reverse; a new policy allowing the reverse reaches the running clients (no
restart) and then works too."""

import unittest

from harness import RealClientTest, assert_unreachable, wait_http

# HuJSON on purpose: comments and trailing commas.
ONE_WAY = """{
  // tagged nodes come from tagged pre-auth keys
  "tagOwners": {"tag:browser": [], "tag:cli": []},
  "acls": [
    {"action": "accept", "src": ["tag:browser"], "dst": ["tag:cli:*"]},
  ],
}
"""

BOTH_WAYS = """{
  "tagOwners": {"tag:browser": [], "tag:cli": []},
  "acls": [
    {"action": "accept", "src": ["tag:browser"], "dst": ["tag:cli:*"]},
    // new: the CLI may now call the browser as well
    {"action": "accept", "src": ["tag:cli"], "dst": ["tag:browser:*"]},
  ],
}
"""


class PolicyTest(RealClientTest):
    TIMEOUT = 300

    def test_tag_policy_one_way_then_both_ways_live(self):
        self.start_server()
        api = self.make_org("org-policy")
        api.create_namespace("ns-a")
        api.put_policy(ONE_WAY)
        browser, ip_browser = self.join(api, "ns-a", "browser", tags=["tag:browser"])
        cli, ip_cli = self.join(api, "ns-a", "cli", tags=["tag:cli"])

        wait_http(browser, ip_cli, "hello from cli")
        assert_unreachable(cli, ip_browser, forbidden="hello from browser")
        wait_http(browser, ip_cli, "hello from cli")  # one-way still works after the probes

        pids = (browser.proc.pid, cli.proc.pid)
        api.put_policy(BOTH_WAYS)
        wait_http(cli, ip_browser, "hello from browser", timeout=90)
        wait_http(browser, ip_cli, "hello from cli")
        self.assertEqual((browser.proc.pid, cli.proc.pid), pids)
        self.assertTrue(browser.alive() and cli.alive(), "clients were restarted")


if __name__ == "__main__":
    unittest.main()
