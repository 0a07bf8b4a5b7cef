"""A deployment of several tenscale instances behind a real load balancer, inside the test's
network namespace: a private PostgreSQL (initdb, as user postgres) and Redis, N `tenscale
serve` processes sharing them and one DERP mesh key, and HAProxy (Debian's package) in
front, passing the `/ts2021` and `/derp` upgrades through.

HAProxy has one frontend per instance, each preferring its instance and falling back to the
others (`backup` servers, health-checked every second), and each instance names its own
frontend as the DERP host in the DERP map. So a client that joins through frontend i has its
control and DERP connections on instance i while it is up, and on a survivor after a crash:
the test can pin two nodes of one namespace to different instances, and traffic between them
must cross the mesh. The shared frontend (round robin) is the production shape of README's
"Production topology"."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness import Server, WaitAbort, free_port, http_get, log, tail, wait_for

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/usr/lib/postgresql/15/bin"))


class PrivatePostgres:
    """A PostgreSQL cluster of its own on a loopback port, run as user postgres."""

    def __init__(self):
        # Not under the test's own directory: that one is private to root (mkdtemp, 0700).
        self.dir = Path(tempfile.mkdtemp(prefix="tspg-", dir="/tmp"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "PrivatePostgres":
        pg = pwd.getpwnam("postgres")
        os.chown(self.dir, pg.pw_uid, pg.pw_gid)
        self._as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"])
        log_path = self.dir / "postgres.log"
        with open(log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                ["runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(self.data),
                 "-p", str(self.port), "-k", str(self.dir), "-c", "listen_addresses=127.0.0.1",
                 "-c", "max_connections=200", "-c", "fsync=off"],
                stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(self._ready, 60, f"PostgreSQL on port {self.port}")
        self._as_postgres([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                           "tenscale"])
        return self

    def _as_postgres(self, argv: list[str]) -> None:
        res = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise AssertionError(f"{argv[0]} failed: {res.stdout[-500:]} {res.stderr[-500:]}")

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError("postgres exited:\n" + tail(self.dir / "postgres.log", 30))
        res = subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                             capture_output=True, timeout=10)
        return res.returncode == 0

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/tenscale"

    def query(self, sql: str) -> str:
        res = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "tenscale",
                              "-At", "-c", sql], capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise AssertionError(f"psql {sql!r}: {res.stderr}")
        return res.stdout.strip()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    def __init__(self, workdir: Path):
        self.dir = Path(workdir)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "PrivateRedis":
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                                        text=True, timeout=10).stdout.strip() == "PONG", 30, "Redis")
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def haproxy_config(instances: list[tuple[int, int]], shared_port: int) -> str:
    """`instances`: (frontend port, instance port) pairs. The config the tests run, and the
    one README's production section shows the shared part of."""
    lines = [
        "global",
        "  maxconn 8000",  # two descriptors each: within the usual 20,000 limit
        "defaults",
        "  mode http",
        "  timeout connect 5s",
        "  timeout client 1h",
        "  timeout server 1h",
        # After a 101 (the /ts2021 and /derp upgrades, WebSockets) the connection is a tunnel.
        "  timeout tunnel 24h",
        "  option redispatch",
        "  retries 3",
        "  default-server inter 1s fall 2 rise 2",
        "frontend shared",
        f"  bind 127.0.0.1:{shared_port}",
        "  default_backend all",
        "backend all",
        "  balance leastconn",
        "  option httpchk GET /readyz",
    ]
    lines += [f"  server i{n} 127.0.0.1:{port} check" for n, (_, port) in enumerate(instances, 1)]
    for n, (front, port) in enumerate(instances, 1):
        lines += [f"frontend pinned{n}", f"  bind 127.0.0.1:{front}", f"  default_backend prefer{n}",
                  f"backend prefer{n}", "  option httpchk GET /readyz",
                  f"  server i{n} 127.0.0.1:{port} check"]
        lines += [f"  server i{m} 127.0.0.1:{other} check backup"
                  for m, (_, other) in enumerate(instances, 1) if m != n]
    return "\n".join(lines) + "\n"


class Cluster:
    """PostgreSQL + Redis + N instances + HAProxy. `front_url(i)` is instance i's pinned
    frontend; `instances[i]` the `Server` itself (its `url` is the instance's own port)."""

    def __init__(self, binary: str, workdir: Path, size: int = 3):
        self.dir = Path(workdir)
        self.postgres = PrivatePostgres()
        self.redis = PrivateRedis(self.dir / "redis")
        self.mesh_key = secrets.token_hex(32)
        self.fronts = [free_port() for _ in range(size)]
        self.shared = free_port()
        self.instances: list[Server] = []
        self.binary = binary
        self.haproxy: subprocess.Popen | None = None

    def start(self) -> "Cluster":
        self.postgres.start()
        self.redis.start()
        for n, front in enumerate(self.fronts):
            server = Server(self.binary, self.dir / f"instance{n + 1}", derp="plain", extra_env={
                "TENSCALE_DATABASE_URL": self.postgres.url,
                "TENSCALE_REDIS_URL": self.redis.url,
                "TENSCALE_DERP_MESH_KEY": self.mesh_key,
                "TENSCALE_SERVER_URL": self.front_url(n),
                "TENSCALE_DERP_HOST": "127.0.0.1",
                "TENSCALE_DERP_PORT": str(front),
                "TENSCALE_PRESENCE_LEASE": "5s",
                # Every connection arrives from HAProxy's one address: the per-address cap and
                # handshake rate would count all clients as one (README's production topology
                # says the same).
                "TENSCALE_MAX_CONNECTIONS_PER_IP": "0",
                "TENSCALE_HANDSHAKE_RATE_PER_IP": "0",
            })
            server.start()
            self.instances.append(server)
        self._start_haproxy()
        for n in range(len(self.instances)):
            wait_for(lambda n=n: self.metric(n, "tenscale_derp_mesh_links") == len(self.instances) - 1, 30,
                     f"instance {n + 1}'s mesh links to the other instances")
        return self

    def _start_haproxy(self) -> None:
        config = self.dir / "haproxy.cfg"
        config.write_text(haproxy_config(list(zip(self.fronts, [s.port for s in self.instances])), self.shared))
        check = subprocess.run(["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"haproxy -c: {check.stdout} {check.stderr}"
        with open(self.dir / "haproxy.log", "ab") as logf:
            self.haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=logf,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        def answers(port: int) -> bool:
            if self.haproxy.poll() is not None:
                raise WaitAbort("haproxy exited:\n" + tail(self.dir / "haproxy.log", 20))
            return http_get(f"http://127.0.0.1:{port}/healthz", timeout=2)[0] == 200
        for port in [self.shared, *self.fronts]:
            wait_for(lambda port=port: answers(port), 30, f"HAProxy frontend on port {port}")
        log(f"HAProxy up: shared :{self.shared}, pinned {self.fronts}")

    def front_url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.fronts[n]}"

    @property
    def shared_url(self) -> str:
        return f"http://127.0.0.1:{self.shared}"

    def metric(self, n: int, name: str) -> float:
        """The sum of every sample of `name` on instance n's /metrics (0 when absent)."""
        status, text = http_get(self.instances[n].url + "/metrics", timeout=5)
        if status != 200:
            return -1
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                key = line.split()[0].split("{")[0]
                if key == name:
                    total += float(line.split()[-1])
        return total

    def stop(self) -> None:
        for server in self.instances:
            server.stop()
        if self.haproxy is not None and self.haproxy.poll() is None:
            self.haproxy.terminate()
            self.haproxy.wait(30)
        self.redis.stop()
        self.postgres.stop()

    def diagnostics(self) -> str:
        parts = [s.diagnostics(80) for s in self.instances]
        parts.append("----- haproxy -----\n" + tail(self.dir / "haproxy.log", 40))
        return "\n".join(parts)

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
