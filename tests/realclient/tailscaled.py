"""The CLI hub as users run it: a real ``tailscaled`` driven only through the real
``tailscale`` CLI.

``Tailscaled`` runs one daemon in userspace-networking mode (no TUN device) with its own
state directory and LocalAPI socket, inside the test's private network namespace. Every
interaction goes through the ``tailscale`` binary of the same release, as a user would type
it: ``up``, ``set --ssh``, ``status --json``, ``ip``, ``ping``, ``logout``, ``nc``, ``ssh``.

The binaries come from ``clients.sh`` (built once from the Go module proxy at a pinned
release, cached outside the repository); ``run.sh`` exports their directory as
``TAILSCALE_BIN_DIR``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import WaitAbort, clean_env, from_setup_script, log, pretty_tail, tail, wait_for

# Tailscale SSH's banner: what any TCP connection to port 22 of a node running it gets first.
SSH_BANNER = b"SSH-2.0-Tailscale"


def client_dir() -> Path:
    """Where `tailscale` and `tailscaled` are (clients.sh builds them on first use)."""
    return Path(from_setup_script("TAILSCALE_BIN_DIR", "clients.sh"))


class CliError(AssertionError):
    """A `tailscale` command that exited non-zero; carries its output."""

    def __init__(self, args: list[str], res: subprocess.CompletedProcess):
        self.returncode, self.stdout, self.stderr = res.returncode, res.stdout, res.stderr
        super().__init__(f"`tailscale {' '.join(args)}` exited {res.returncode}\n"
                         f"stdout:\n{res.stdout[-2000:]}\nstderr:\n{res.stderr[-2000:]}")


class Tailscaled:
    """One `tailscaled --tun=userspace-networking` with its own state dir and socket.

    The daemon's stdout/stderr (its whole log) goes to ``<dir>/tailscaled.log``.
    ``env`` is added to both the daemon's and the CLI's environment (e.g. the server's
    ``client_env()``: DERP over plain HTTP, or the test CA).
    """

    def __init__(self, workdir: Path, name: str, env: dict[str, str] | None = None):
        bins = client_dir()
        self.tailscale, self.tailscaled = str(bins / "tailscale"), str(bins / "tailscaled")
        self.name = name
        self.dir = Path(workdir)
        self.state_dir = self.dir / "state"
        self.home = self.dir / "home"
        for d in (self.state_dir, self.home):
            d.mkdir(parents=True, exist_ok=True)
        # A unix socket path must fit in 108 bytes; test directories can be longer.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="tsd-", dir="/tmp"))
        self.socket = self.socket_dir / "sock"
        self.log_path = self.dir / "tailscaled.log"
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None

    # -- the daemon

    def env(self) -> dict[str, str]:
        return clean_env({"HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config"),
                          **self.extra_env})

    def start(self) -> "Tailscaled":
        assert not self.alive(), "tailscaled already running"
        with open(self.log_path, "ab") as logf:
            logf.write(f"\n===== tailscaled {self.name} =====\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(
                [self.tailscaled, "--tun=userspace-networking", f"--statedir={self.state_dir}",
                 f"--socket={self.socket}", "--port=0", "--no-logs-no-support"],
                env=self.env(), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=logf,
                stderr=subprocess.STDOUT, start_new_session=True)
        log(f"tailscaled {self.name}: pid {self.proc.pid}")
        wait_for(self._answers, 60, f"tailscaled {self.name}'s LocalAPI on {self.socket}")
        return self

    def _answers(self) -> bool:
        """The LocalAPI answers (`tailscale status` exits 0 even when logged out with --json)."""
        self.check_alive()
        return self.run("status", "--json", check=False, timeout=10).returncode == 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise WaitAbort(f"tailscaled {self.name} exited with {self.proc.returncode}:\n"
                            + tail(self.log_path, 30))

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (tailscaled logs an ephemeral node out on the way down), then SIGKILL."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"tailscaled {self.name} ignored SIGTERM for {timeout}s; killing it")
                self.kill()
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(30)

    # -- the CLI

    def run(self, *args: str, check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
        """`tailscale --socket=… ARGS…`; raise CliError on a non-zero exit when `check`."""
        argv = [self.tailscale, f"--socket={self.socket}", *args]
        try:
            res = subprocess.run(argv, env=self.env(), cwd=self.dir, capture_output=True, text=True,
                                 timeout=timeout, input=input,
                                 stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            res = subprocess.CompletedProcess(argv, 124, _text(e.stdout), _text(e.stderr) + "\n(timed out)")
        if check and res.returncode != 0:
            raise CliError(list(args), res)
        return res

    def up(self, login_server: str, auth_key: str, hostname: str | None = None,
           *extra: str, timeout: float = 120) -> None:
        """`tailscale up --login-server=URL --authkey=KEY --hostname=NAME`: returns once Running."""
        self.run("up", f"--login-server={login_server}", f"--authkey={auth_key}",
                 f"--hostname={hostname or self.name}", f"--timeout={int(timeout)}s", *extra,
                 timeout=timeout + 30)
        log(f"tailscale up ({self.name}): {self.ipv4()}")

    def set_ssh(self, on: bool = True) -> None:
        self.run("set", f"--ssh={'true' if on else 'false'}")

    def status(self) -> dict[str, Any]:
        return json.loads(self.run("status", "--json", timeout=20).stdout)

    def backend_state(self) -> str:
        return self.status().get("BackendState", "")

    def peers(self) -> list[dict[str, Any]]:
        """The peers `tailscale status --json` lists (an empty list when there are none)."""
        return list((self.status().get("Peer") or {}).values())

    def peer_named(self, hostname: str) -> dict[str, Any] | None:
        for p in self.peers():
            if p.get("HostName") == hostname:
                return p
        return None

    def ipv4(self) -> str:
        return self.run("ip", "-4", timeout=20).stdout.strip()

    def ping(self, target: str, timeout_s: int = 5, count: int = 1) -> subprocess.CompletedProcess:
        """`tailscale ping` (disco, through DERP or direct); never raises on failure. Exits 0 at
        the first pong, whichever path it took (`--until-direct=false`)."""
        return self.run("ping", "--until-direct=false", f"--timeout={timeout_s}s", f"--c={count}", target,
                        check=False, timeout=timeout_s * count + 30)

    def logout(self) -> None:
        self.run("logout", timeout=60)

    # -- reaching SSH

    def ssh(self, user: str, host: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """`tailscale ssh USER@HOST COMMAND`: the real CLI, which runs OpenSSH with a ProxyCommand
        of `tailscale nc` and a known_hosts file made from the netmap's SSH host keys."""
        return self.run("ssh", f"{user}@{host}", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
                        command, check=False, timeout=timeout)

    def nc(self, host: str, port: int, send: bytes = b"", until: bytes = SSH_BANNER,
           seconds: float = 10) -> bytes:
        """`tailscale nc HOST PORT`: writes `send`, keeps its input open, and returns what it
        read once `until` shows up, the peer closes, or `seconds` pass (then it is stopped).

        Used both ways: an SSH server speaks first, so a TCP connection to port 22 that got
        through reads Tailscale SSH's banner, and one that never connects reads nothing."""
        argv = [self.tailscale, f"--socket={self.socket}", "nc", host, str(port)]
        proc = subprocess.Popen(argv, env=self.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        got = b""
        deadline = time.monotonic() + seconds
        try:
            if send:
                proc.stdin.write(send)
                proc.stdin.flush()
            while until not in got:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
                    break
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                got += chunk
        except BrokenPipeError:
            pass  # nc gave up before taking our bytes: nothing was read
        finally:
            proc.kill()
            proc.wait(10)
            for f in (proc.stdin, proc.stdout):
                f.close()
        return got

    # -- logs

    def diagnostics(self, lines: int = 80) -> str:
        return (f"----- tailscaled {self.name}: alive={self.alive()} "
                f"rc={None if self.proc is None else self.proc.returncode} -----\n"
                f"{pretty_tail(self.log_path, lines)}")


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
