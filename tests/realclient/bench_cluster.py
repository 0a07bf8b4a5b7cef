#!/usr/bin/env python3
"""Benchmark: the load generator against tenscale instances behind HAProxy (issue 14, item 6).

Not a test (unittest discovers only test_*.py): it prints figures for BENCHMARKS.md. It starts
the deployment `cluster.py` starts for the tests — a private PostgreSQL and Redis, N release
instances sharing them and one DERP mesh key, HAProxy in front — then runs `tenscale-loadgen`
against HAProxy's shared frontend (`balance leastconn`), seeding the loadgen's namespaces and
keys in the cluster's PostgreSQL. Every node opens its own connection through HAProxy, so with
two instances about half of every node's peers hold their map stream on the other instance,
and a join reaches them only through the outbox and Redis: the fan-out figure is then a
cross-instance figure. With one instance behind the same HAProxy, on the same kind of
database, the same command gives the baseline.

    python3 tests/realclient/bench_cluster.py --instances 2 -- --nodes 1000 --namespaces 1
    python3 tests/realclient/bench_cluster.py --instances 1 -- --nodes 1000 --namespaces 1

Arguments after `--` go to tenscale-loadgen unchanged. Binaries: target/release/tenscale and
target/release/tenscale-loadgen (`cargo build --release --features testkit --bin tenscale
--bin tenscale-loadgen`), or TENSCALE_BIN / LOADGEN_BIN. Needs root (PostgreSQL runs as user
postgres), haproxy, redis-server and PostgreSQL's binaries (tests/services.sh installs them).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

from cluster import Cluster  # noqa: E402
from harness import log  # noqa: E402


def binary(variable: str, default: Path) -> str:
    path = Path(os.environ.get(variable, default))
    if not os.access(path, os.X_OK):
        sys.exit(f"bench_cluster: {path} is not an executable; build it or set {variable}")
    return str(path)


class ConnectionSampler(threading.Thread):
    """The most established TCP connections each instance held at once, sampled twice a
    second with `ss`: how HAProxy spread the nodes' connections over the instances."""

    def __init__(self, ports: list[int]):
        super().__init__(daemon=True)
        self.ports = ports
        self.peak = [0] * len(ports)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            for n, port in enumerate(self.ports):
                out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                                     capture_output=True, text=True, timeout=30).stdout
                self.peak[n] = max(self.peak[n], len(out.splitlines()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("loadgen_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    loadgen_args = [a for a in args.loadgen_args if a != "--"]
    server = binary("TENSCALE_BIN", REPO / "target/release/tenscale")
    loadgen = binary("LOADGEN_BIN", REPO / "target/release/tenscale-loadgen")

    workdir = Path(tempfile.mkdtemp(prefix="tenscale-bench-cluster-"))
    cluster = Cluster(server, workdir, size=args.instances)
    try:
        cluster.start()
        log(f"{args.instances} instance(s) behind HAProxy at {cluster.shared_url}")
        command = [loadgen, "--url", cluster.shared_url, "--database-url", cluster.postgres.url, *loadgen_args]
        # The loadgen holds a map stream per node; HAProxy holds two descriptors per stream.
        sampler = ConnectionSampler([server.port for server in cluster.instances])
        sampler.start()
        result = subprocess.run(command, text=True, capture_output=True, timeout=3600,
                                preexec_fn=lambda: _raise_nofile(65536))
        sampler.done.set()
        print(result.stdout, end="")
        if result.returncode != 0:
            print(result.stderr[-4000:], file=sys.stderr)
            print(cluster.diagnostics(), file=sys.stderr)
            return result.returncode
        print(f"instances: {args.instances} behind HAProxy (balance leastconn), PostgreSQL + Redis private")
        print(f"most connections held at once, per instance: {sampler.peak}")
        return 0
    finally:
        cluster.stop()
        cluster.cleanup()


def _raise_nofile(limit: int) -> None:
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


if __name__ == "__main__":
    sys.exit(main())
