"""(browser) The product's whole flow in a real browser: headless Chromium loads an app page
from an allowed origin; the page gets a JWT from its own (stand-in) backend and trades it at
`POST /v1/browser-keys` (a real cross-origin fetch under CORS); it starts the real Tailscale
browser client (tsconnect js/wasm, pinned release) over WebSocket, sees its user's hub and
nothing of another namespace, fetches the hub's HTTP through the tailnet (over DERP on a
WebSocket, the only path a browser has), and opens a Tailscale SSH terminal on the hub as a
local user — as root it is refused. After `ipn.logout()` the node is gone at once; after a
page simply closes, within the ephemeral timeout. A page of another origin gets no key."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import unittest
from pathlib import Path

from harness import HERE, free_port, from_setup_script, log, wait_for, wait_node_gone
from hubtest import HubTest, LocalUser, serve_greeting, wait_peer_hostnames

sys.path.insert(0, str(HERE / "browser"))
from mint_jwt import mint_browser_jwt  # noqa: E402  (the README's example, run for real)

SECRET = b"the-app-backend-shares-this-with-tenscale-0123"
ISSUER = "https://app.example.test"
POLICY = """{
  "tagOwners": {"tag:browser": [], "tag:cli": [], "tag:hub-1": [], "tag:hub-2": []},
  "acls": [{"action": "accept", "src": ["tag:browser"], "dst": ["tag:cli:*"]}],
  "ssh": [{"action": "accept", "src": ["tag:browser"], "dst": ["tag:cli"], "users": ["autogroup:nonroot"]}],
}
"""
# Typed as `$((6*7))`, so that only the shell's output (not the terminal's echo) holds MARK.
TYPED = "id -un; echo ran-in-the-browser-$((6*7))\n"
MARK = "ran-in-the-browser-42"


def browser_client_dir() -> Path:
    """Where tsconnect's main.wasm and wasm_exec.js are (browser-client.sh builds them)."""
    return Path(from_setup_script("TSCONNECT_DIR", "browser-client.sh"))


class AppBackend:
    """The app's own web server: serves the page and the client, and mints its user's JWT."""

    def __init__(self, namespace: str):
        client = browser_client_dir()
        files = {
            "/": (HERE / "browser" / "page.html", "text/html; charset=utf-8"),
            "/main.wasm": (client / "main.wasm", "application/wasm"),
            "/wasm_exec.js": (client / "wasm_exec.js", "text/javascript"),
        }

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                path = self.path.split("?")[0]
                if path == "/jwt":
                    body, kind = mint_browser_jwt(SECRET, ISSUER, "tenscale", namespace).encode(), "text/plain"
                elif path in files:
                    body, kind = files[path][0].read_bytes(), files[path][1]
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def page(self, control_url: str, hostname: str) -> str:
        return f"{self.origin}/?control={control_url}&hostname={hostname}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class BrowserSession:
    """One run of `browser/drive.mjs`: its steps, parsed as they were printed."""

    def __init__(self, workdir: Path, config: dict):
        self.steps: dict[str, dict] = {}
        self.console: list[str] = []
        workdir.mkdir(parents=True, exist_ok=True)
        res = subprocess.run(["node", str(HERE / "browser" / "drive.mjs"), json.dumps(config)],
                             cwd=HERE / "browser", capture_output=True, text=True, timeout=600)
        (workdir / "driver.stderr").write_text(res.stderr)
        for line in res.stdout.splitlines():
            try:
                step = json.loads(line)
            except json.JSONDecodeError:
                continue
            if step["step"] == "console":
                self.console.append(step["text"])
            else:
                self.steps[step["step"]] = step
        (workdir / "console.log").write_text("\n".join(self.console))
        self.returncode = res.returncode
        log(f"browser session: rc={res.returncode} steps={list(self.steps)}")

    def step(self, name: str) -> dict:
        if name not in self.steps:
            raise AssertionError(f"the browser never reached {name!r}: steps {self.steps}\n"
                                 f"console (last 40):\n" + "\n".join(self.console[-40:]))
        return self.steps[name]


def ensure_browser_tools() -> None:
    """playwright-core from npm (package-lock.json pins it) beside drive.mjs."""
    if not (HERE / "browser" / "node_modules" / "playwright-core").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE / "browser", check=True,
                       capture_output=True, timeout=600)


class BrowserTest(HubTest):
    TIMEOUT = 900

    def test_readme_shows_the_jwt_example_this_test_runs(self):
        readme = (HERE.parent.parent / "README.md").read_text()
        example = (HERE / "browser" / "mint_jwt.py").read_text()
        self.assertIn(example[example.index("import base64"):].rstrip(), readme)

    def test_page_gets_a_key_joins_fetches_and_opens_ssh_on_the_hub(self):
        ensure_browser_tools()
        # Control over plain HTTP on an explicit port (tsconnect then dials ws://host:port; for
        # https it would dial wss://host without the port), DERP over TLS through a front
        # (the browser's DERP is always wss://, and Chromium skips the test certificate).
        self.start_server(derp="tls-front", ephemeral_timeout="10s")
        api = self.make_org("org-browser")
        for ns in ("alice", "mallory"):
            api.create_namespace(ns)
            api.put_namespace_policy(ns, POLICY)
        app = AppBackend("alice")
        self.addCleanup(app.stop)
        elsewhere = AppBackend("alice")  # an origin the settings do not allow
        self.addCleanup(elsewhere.stop)
        settings = self.tmp / "browser-keys.json"
        settings.write_text(json.dumps({
            "issuer": ISSUER, "audience": "tenscale",
            "keys": [{"kid": "app-1", "alg": "HS256", "secret": SECRET.decode()}],
            "allowed_origins": [app.origin],
        }))
        shown = json.loads(self.server.cli("browser-keys", "set", "--org", "org-browser", str(settings)).stdout)
        self.assertEqual(shown["keys"], [{"kid": "app-1", "alg": "HS256", "kind": "secret"}])

        user = LocalUser()
        self.addCleanup(user.remove)
        hub = self.daemon("hub")
        hub_ip = self.up(hub, self.hub_key(api, "alice", "1"))
        hub.set_ssh()
        other = self.daemon("mallory-hub")
        self.up(other, self.hub_key(api, "mallory", "2"), "mallory-hub")
        port = serve_greeting(b"hello from the hub")

        shot = self.tmp / "browser-session.png"
        session = BrowserSession(self.tmp / "chromium-1", {
            "url": app.page(self.server.url, "browser"),
            "hub_url": f"http://{hub_ip}:{port}/",
            "ssh": {"host": hub_ip, "user": user.name, "input": TYPED, "until": MARK,
                    "root_too": True},
            "end": "logout", "screenshot": str(shot),
        })
        key = session.step("key")
        self.assertEqual(key.get("namespace"), "alice", key)
        self.assertTrue(key["prefix"].startswith("tskey-auth-"))
        running = session.step("running")
        peers = {p["name"].split(".")[0] for p in running["netMap"]["peers"]}
        self.assertEqual(peers, {"hub"}, running["netMap"])
        fetched = session.step("fetch")
        self.assertEqual(fetched.get("status"), 200, fetched)
        self.assertIn("hello from the hub", fetched["text"])
        ssh = session.step("ssh")
        self.assertTrue(ssh["connected"], ssh)
        self.assertIn(MARK, ssh["output"], ssh)
        # `id -un`'s line (the prompt may come before or after the echo of what was typed).
        self.assertIn(f"{user.name}\r\n", ssh["output"], "id -un ran as the user")
        root = session.step("ssh-root")
        self.assertFalse(root["connected"] and MARK in root["output"], root)
        self.assertNotIn(MARK, root["output"])
        log(f"ssh as root: {root['errors'].strip()[-200:]!r} ({root['why']})")
        self.assertTrue(shot.exists(), "the screenshot of the session")
        log(f"screenshot: {shot}")
        self.assertEqual(session.step("logout")["state"], "NeedsLogin")
        # Logged out: gone at once from the hub's netmap and from the API.
        wait_peer_hostnames(hub, set(), timeout=20)
        wait_node_gone(api, "alice", "browser", timeout=20)
        wait_peer_hostnames(other, set())
        self.assertEqual(session.returncode, 0)

        # A page that just closes: gone within the ephemeral timeout (10 s here).
        closing = BrowserSession(self.tmp / "chromium-2", {"url": app.page(self.server.url, "browser-2"), "end": "close"})
        closing.step("running")
        closing.step("closed")
        wait_for(lambda: hub.peer_named("browser-2") is None, 90, "browser-2 gone from the hub after its page closed")
        wait_node_gone(api, "alice", "browser-2", timeout=60)

        # Another origin: CORS keeps the answer from the page, so it has no key.
        refused = BrowserSession(self.tmp / "chromium-3", {"url": elsewhere.page(self.server.url, "x"),
                                                           "expect_key_refused": True})
        self.assertIn("error", refused.step("key"), refused.steps)
        log(f"other origin: {refused.step('key')['error']!r}")
        self.assertIsNone(api.find_node("alice", "x"))


if __name__ == "__main__":
    unittest.main()
