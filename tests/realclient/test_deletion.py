"""(hub d) What a running client sees when the server deletes it, through the real CLI.

Deleting a node, or the namespace it is in, while its `tailscaled` is online: the client ends
in NeedsLogin with the server's reason in its health, and stays there quietly — its map poll
is held open, not refused in a loop — while peers drop it and other namespaces are untouched.
A new auth key (`tailscale up --force-reauth`) brings it back. tenscale's decision for
`DELETE /v1/namespaces/{name}` with online nodes is this one (log them out), not a refusal."""

import time
import unittest

from harness import wait_for, wait_node_online
from hubtest import HubTest, wait_peer_hostnames
from tailscaled import Tailscaled

# What a v1.102 client logs each time a map poll fails (control/controlclient/direct.go).
FAILED_POLL = "PollNetMap"


def wait_logged_out(d: Tailscaled, why: str) -> dict:
    """Waits for `d` to say it must log in again, with `why` among its health messages."""
    def logged_out() -> dict:
        d.check_alive()
        st = d.status()
        health = " ".join(st.get("Health") or [])
        if st.get("BackendState") == "NeedsLogin" and why in health:
            return st
        raise AssertionError(f"BackendState={st.get('BackendState')} health={health!r}")
    return wait_for(logged_out, 60, f"{d.name} to be logged out ({why!r})")


def failed_polls_after(d: Tailscaled, mark: int) -> list[str]:
    text = d.log_path.read_bytes()[mark:].decode(errors="replace")
    return [line for line in text.splitlines() if FAILED_POLL in line]


class DeletionTest(HubTest):

    def test_deleted_node_and_namespace_log_their_online_clients_out(self):
        self.start_server()
        api = self.make_org("org-delete")
        api.create_namespace("alice")
        api.create_namespace("bob")
        hub = self.daemon("hub")
        self.up(hub, self.hub_key(api, "alice", "1"))
        laptop = self.daemon("laptop")
        self.up(laptop, api.create_key("alice", ephemeral=False))
        bystander = self.daemon("bystander")
        self.up(bystander, self.hub_key(api, "bob", "2"))
        wait_peer_hostnames(hub, {"laptop"})

        # One node deleted: it is logged out, its peer drops it.
        node = wait_node_online(api, "alice", "laptop")
        api.delete_node("alice", node["id"])
        wait_logged_out(laptop, "deleted")
        wait_peer_hostnames(hub, set(), timeout=30)

        # The namespace deleted with its hub online: logged out too, the other namespace not.
        wait_node_online(api, "alice", "hub")
        api.request("DELETE", "/v1/namespaces/alice", expect=(204,))
        wait_logged_out(hub, "namespace")
        mark = hub.log_path.stat().st_size
        # An observation window, not a wait for a condition: a client whose poll is refused
        # retries within seconds (backoff from 10 ms, capped at 30 s); a held one stays silent.
        time.sleep(10)
        self.assertEqual(failed_polls_after(hub, mark), [], "the deleted hub polls in a loop")
        self.assertEqual(hub.backend_state(), "NeedsLogin")
        self.assertEqual(bystander.backend_state(), "Running", "another namespace's node was touched")
        wait_node_online(api, "bob", "bystander")

        # A new key in a new namespace brings the hub back.
        api.create_namespace("alice-2")
        hub.up(self.server.url, self.hub_key(api, "alice-2", "1"), "hub", "--force-reauth")
        self.assertEqual(hub.backend_state(), "Running")
        wait_node_online(api, "alice-2", "hub")


if __name__ == "__main__":
    unittest.main()
