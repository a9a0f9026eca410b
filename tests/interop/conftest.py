"""Starts the broker under test for each test: dynamq (default) or, with
DYNAMQ_TEST_BROKER=mosquitto, Debian's Mosquitto as a reference to validate the tests.

Every broker listens on 127.0.0.1 only, on ports picked free by the OS, so tests can run in
parallel. Its stderr goes to a file (`Broker.log_text()`), for the tests that check that a
protocol violation is logged. `Broker.restart()` starts it again on the same data dir.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# DYNAMQ_BIN: the broker binary, when it is not built in target/ (e.g. CARGO_TARGET_DIR set).
DYNAMQ = Path(os.environ.get("DYNAMQ_BIN") or REPO / "target" / "release" / "dynamq")
BROKER = os.environ.get("DYNAMQ_TEST_BROKER", "dynamq")
if BROKER not in ("dynamq", "mosquitto"):
    raise pytest.UsageError(f"DYNAMQ_TEST_BROKER must be dynamq or mosquitto, not {BROKER!r}")

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port, read from /proc/net/tcp so the probe opens
    no connection (a probe connection would show up in the broker's log as a failed client)."""
    try:
        table = Path("/proc/net/tcp").read_text()
    except OSError:  # not Linux: fall back to connecting
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False
    want = f"0100007F:{port:04X}"
    return any(f[1] == want and f[3] == "0A" for f in (ln.split() for ln in table.splitlines()[1:]))


def pytest_configure(config):
    for line in (
        "dynamq_only: exercises dynamq-specific behaviour (its CLI, its log lines); skipped under mosquitto",
    ):
        config.addinivalue_line("markers", line)


def pytest_collection_modifyitems(config, items):
    if BROKER != "mosquitto":
        return
    skip = pytest.mark.skip(reason="dynamq-specific behaviour (DYNAMQ_TEST_BROKER=mosquitto)")
    for item in items:
        if "dynamq_only" in item.keywords:
            item.add_marker(skip)


class Broker:
    """One broker process; `port` is MQTT over TCP, `ws_port` MQTT over WebSocket at /mqtt."""

    def __init__(self, data_dir: Path, *, max_keepalive: int | None = None,
                 max_packet_size: int | None = None, persistence: bool = False,
                 extra_args: tuple[str, ...] = (), password_file: Path | None = None,
                 acl_file: Path | None = None, allow_anonymous: bool | None = None,
                 log_level: str = "info"):
        self.kind = BROKER
        self.data_dir = data_dir
        self.max_keepalive = max_keepalive
        self.max_packet_size = max_packet_size
        self.persistence = persistence
        # dynamq only: more `serve` flags (e.g. --backend-conf FILE)
        self.extra_args = list(extra_args)
        # Mosquitto's password_file, acl_file and allow_anonymous (dynamq: the same flags)
        self.password_file = password_file
        self.acl_file = acl_file
        self.allow_anonymous = allow_anonymous
        # dynamq only: --log-level (e.g. "trace" for a run whose whole log is searched)
        self.log_level = log_level
        self.port = free_port()
        self.ws_port = free_port()
        self.log_path = data_dir / "broker.stderr"
        self.proc: subprocess.Popen | None = None
        self._log_offset_at_start = 0

    def _command(self) -> list[str]:
        if self.kind == "mosquitto":
            conf = self.data_dir / "mosquitto.conf"
            lines = [
                f"listener {self.port} 127.0.0.1",
                f"listener {self.ws_port} 127.0.0.1",
                "protocol websockets",
                # without it, Mosquitto 2.0.11's websockets listener ignores the address and
                # listens on every interface (IPv6 ::)
                "socket_domain ipv4",
                f"allow_anonymous {'false' if self.allow_anonymous is False else 'true'}",
                "log_dest stderr",
                "log_type all",
                f"persistence {'true' if self.persistence else 'false'}",
                # run as root, Mosquitto would drop to user "mosquitto", which cannot write here
                f"user {pwd.getpwuid(os.getuid()).pw_name}",
            ]
            if self.persistence:
                lines.append(f"persistence_location {self.data_dir}/")
            if self.max_keepalive is not None:
                lines.append(f"max_keepalive {self.max_keepalive}")
            if self.max_packet_size is not None:
                lines.append(f"max_packet_size {self.max_packet_size}")
            if self.password_file is not None:
                lines.append(f"password_file {self.password_file}")
            if self.acl_file is not None:
                lines.append(f"acl_file {self.acl_file}")
            conf.write_text("\n".join(lines) + "\n")
            return ["mosquitto", "-c", str(conf)]
        if not DYNAMQ.exists():
            pytest.fail(f"{DYNAMQ} does not exist: run cargo build --release "
                        "(or DYNAMQ_TEST_BROKER=mosquitto to run the suite against Mosquitto)")
        cmd = [str(DYNAMQ), "serve", "--tcp", f"127.0.0.1:{self.port}", "--ws", f"127.0.0.1:{self.ws_port}",
               "--data-dir", str(self.data_dir / "data"), "--log-level", self.log_level]
        if self.max_keepalive is not None:
            cmd += ["--max-keepalive", str(self.max_keepalive)]
        if self.max_packet_size is not None:
            cmd += ["--max-packet-size", str(self.max_packet_size)]
        if self.password_file is not None:
            cmd += ["--password-file", str(self.password_file)]
        if self.acl_file is not None:
            cmd += ["--acl-file", str(self.acl_file)]
        if self.allow_anonymous is not None:
            cmd += ["--allow-anonymous", "true" if self.allow_anonymous else "false"]
        return cmd + self.extra_args

    def start(self) -> None:
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        self._log_offset_at_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, cwd=self.data_dir)
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode} at startup:\n{self.log_text()}")
            if all(listening(p) for p in (self.port, self.ws_port)):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} did not accept on {self.port} within {START_TIMEOUT}s:\n{self.log_text()}")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; returns the exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        return proc.returncode

    def restart(self) -> None:
        """Stop and start again on the same data dir and the same ports."""
        self.stop()
        self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, predicate, timeout: float = 3.0) -> list[str]:
        """Lines of the log for which predicate(line) holds, waiting up to `timeout` for one."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [ln for ln in self.log_text().splitlines() if predicate(ln)]
            if lines or time.monotonic() >= deadline:
                return lines
            time.sleep(0.05)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/mqtt"


@pytest.fixture
def start_broker(tmp_path):
    """Factory: start_broker(max_keepalive=..., max_packet_size=..., persistence=...)."""
    started: list[Broker] = []

    def start(**opts) -> Broker:
        d = tmp_path / f"broker{len(started)}"
        d.mkdir()
        b = Broker(d, **opts)
        started.append(b)
        for attempt in range(3):
            try:
                b.start()
                return b
            except RuntimeError:
                # free_port() released the port; something else may have taken it since.
                if attempt == 2 or "ddress in use" not in b.log_text():
                    raise
                b.port, b.ws_port = free_port(), free_port()
        return b

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def broker(start_broker) -> Broker:
    return start_broker()


@pytest.fixture(params=["embedded", "none"], ids=["store-embedded", "store-none"])
def start_any_store_broker(request, start_broker):
    """Factory like start_broker, run once with the default embedded store and once with
    `--store none` (state in memory only): for behaviour that must not depend on the store.
    Under Mosquitto the `none` run is skipped (it would be the same broker twice)."""
    if request.param == "none" and BROKER == "mosquitto":
        pytest.skip("--store none is dynamq's")

    def start(**opts) -> Broker:
        if request.param == "none":
            opts["extra_args"] = (*opts.get("extra_args", ()), "--store", "none")
        return start_broker(**opts)

    return start


@pytest.fixture
def any_store_broker(start_any_store_broker) -> Broker:
    """A broker with the default embedded store, then one with `--store none`."""
    return start_any_store_broker()
