"""(d) A single-use key joins one node; a second node presenting the same key is refused:
it never appears in the API, and its own log says why."""

import re
import time
import unittest

from harness import RealClientTest, log, wait_for, wait_node_online

# The client logs a refused login as "control: [v1] TryLogin: <reason>", where <reason> is the
# server's RegisterResponse.Error verbatim (or "register request: http NNN: <body>" for a
# non-200 answer). Accept the usual phrasings rather than one exact message.
REFUSAL = re.compile(r"(?i)(used|spent|invalid|expired|revoked|not valid|refused|denied|reject|"
                     r"unauthori[sz]ed|forbidden)")


def refusal_line(text: str) -> str | None:
    for line in text.splitlines():
        if "TryLogin: " in line and "fetch control key" not in line and REFUSAL.search(line):
            return line
    return None


class SingleUseKeyTest(RealClientTest):
    TIMEOUT = 240

    def test_single_use_key_cannot_join_twice(self):
        self.start_server()
        api = self.make_org("org-single-use")
        api.create_namespace("ns-a")
        key = api.create_key("ns-a", reusable=False, ephemeral=True)
        self.start_node("node-first", key)
        wait_node_online(api, "ns-a", "node-first")

        second = self.start_node("node-second", key)
        mark = time.monotonic()

        line = wait_for(lambda: refusal_line(second.all_log_text()), 90,
                        "node-second's log to show its login was refused (TryLogin: <reason>)")
        log(f"node-second refusal: {line[:300]}")

        # Keep watching a while: the second node must never be listed.
        while time.monotonic() - mark < 20:
            names = [n["name"] for n in api.nodes("ns-a")]
            self.assertNotIn("node-second", names)
            self.assertEqual(names, ["node-first"])
            time.sleep(1)
        self.assertTrue(second.alive(), "caddy of node-second died; the refusal should only be logged")


if __name__ == "__main__":
    unittest.main()
