"""(hub b) Tailscale SSH obeys the namespace's SSH policy.

Policy: `tag:browser -> tag:cli:*`, and SSH from `tag:browser` to `tag:cli` as any user but
root (`autogroup:nonroot`). A `tag:browser` node (a second `tailscaled`, ephemeral key) runs a
command on the hub as a local non-root user through `tailscale ssh`; as root it is refused; the
hub cannot SSH into the browser node; a node of another namespace cannot even open a TCP
connection to the hub's port 22; and a policy saved without the `ssh` rule refuses the next
session within seconds, with both clients left running."""

import unittest

from harness import log, wait_for
from hubtest import BASE_DOMAIN, HubTest, wait_peer_hostnames
from tailscaled import SSH_BANNER

TAGS = '"tagOwners": {"tag:browser": [], "tag:cli": [], "tag:hub-1": []}'
ACLS = '"acls": [{"action": "accept", "src": ["tag:browser"], "dst": ["tag:cli:*"]}]'
SSH_RULE = ('"ssh": [{"action": "accept", "src": ["tag:browser"], "dst": ["tag:cli"],'
            ' "users": ["autogroup:nonroot"]}]')
WITH_SSH = "{\n  %s,\n  %s,\n  %s,\n}\n" % (TAGS, ACLS, SSH_RULE)
WITHOUT_SSH = "{\n  %s,\n  %s,\n}\n" % (TAGS, ACLS)

MARK = "ran-on-the-hub"


class HubSshTest(HubTest):

    def test_tailscale_ssh_under_namespace_policy(self):
        self.start_server()
        api = self.make_org("org-ssh")
        api.create_namespace("alice")
        api.create_namespace("mallory")
        api.put_namespace_policy("alice", WITH_SSH)
        user, hub, hub_ip, browser, browser_ip = self.ssh_pair(api, "alice")
        browser.set_ssh()  # so that "the hub cannot SSH into it" is the policy's doing
        wait_peer_hostnames(browser, {"hub"})
        wait_peer_hostnames(hub, {"browser"})
        wait_for(lambda: browser.peer_named("hub").get("sshHostKeys")
                 or browser.peer_named("hub").get("SSH_HostKeys"), 60, "the hub's SSH host keys in the browser's netmap")

        # As a non-root user: the command runs on the hub, as that user.
        command = f"id -un; echo {MARK}"

        def session_ran():
            # By its name, as the README does: `tailscale ssh` finds the peer in the netmap.
            res = browser.ssh(user.name, "hub", command)
            if res.returncode == 0 and MARK in res.stdout:
                return res
            raise AssertionError(f"rc={res.returncode} out={res.stdout[-200:]!r} err={res.stderr[-300:]!r}")
        res = wait_for(session_ran, 60, f"tailscale ssh {user.name}@hub", interval=2)
        self.assertEqual(res.stdout.split(), [user.name, MARK])
        log(f"ssh {user.name}@hub: {res.stdout.strip()!r}")

        # As root: refused by the policy (autogroup:nonroot maps root to nobody).
        res = browser.ssh("root", hub_ip, command)
        self.assertNotEqual(res.returncode, 0, f"root session ran: {res.stdout!r}")
        self.assertNotIn(MARK, res.stdout)
        log(f"ssh root@hub refused: {res.stderr.strip()[-200:]!r}")

        # The other way round: neither the filter nor an ssh rule lets the hub in.
        res = hub.ssh(user.name, browser_ip, command, timeout=45)
        self.assertNotEqual(res.returncode, 0, f"hub reached the browser: {res.stdout!r}")
        self.assertNotIn(MARK, res.stdout)
        self.assertNotIn(SSH_BANNER, hub.nc(browser_ip, 22, seconds=8))

        # Another namespace: not even a TCP connection to port 22. Mallory's node sits at an
        # address alice's namespace does not use, and alice's hub's address is free in hers.
        intruder = self.daemon("intruder")
        self.burn_addresses(api, "mallory", intruder, 2)
        self.up(intruder, api.create_key("mallory", ephemeral=True, tags=["tag:browser"]))
        wait_peer_hostnames(intruder, set())
        got = intruder.nc(hub_ip, 22, seconds=10)
        self.assertNotIn(SSH_BANNER, got, "a node of another namespace reached the hub's SSH port")
        self.assertNotIn(SSH_BANNER, intruder.nc(f"hub.alice.{BASE_DOMAIN}", 22, seconds=5))
        # The browser does get the banner the same way, so the probe itself works.
        self.assertIn(SSH_BANNER, browser.nc(hub_ip, 22, seconds=20))

        # A policy without the ssh rule: the next session is refused, clients untouched.
        pids = (hub.proc.pid, browser.proc.pid)
        api.put_namespace_policy("alice", WITHOUT_SSH)

        def refused():
            res = browser.ssh(user.name, hub_ip, command, timeout=45)
            if res.returncode != 0 and MARK not in res.stdout:
                return res
            raise AssertionError(f"session still ran: {res.stdout.strip()!r}")
        res = wait_for(refused, 30, "an SSH session refused after the ssh rule was removed", interval=1)
        log(f"after the policy change: refused ({res.stderr.strip()[-200:]!r})")
        self.assertEqual((hub.proc.pid, browser.proc.pid), pids)
        self.assertTrue(hub.alive() and browser.alive(), "a client was restarted")
        # The packet filter still lets the browser reach the hub: only SSH was taken away.
        self.assertIn(SSH_BANNER, browser.nc(hub_ip, 22, seconds=20))


if __name__ == "__main__":
    unittest.main()
