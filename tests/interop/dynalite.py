"""dynalite (a DynamoDB implementation on LevelDB, from npm) on a loopback port for the
tests, and the `aws dynamodb` CLI (awscli from PyPI) pointed at it, as a user would run it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, free_port

CLI = REPO / "tests" / "node" / "node_modules" / "dynalite" / "cli.js"
AWS = REPO / ".venv" / "bin" / "aws"
# Any key works with dynalite; these are the tutorial's.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAU5IM2XOC7AQWG7HK",
               "AWS_SECRET_ACCESS_KEY": "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"}


class Dynalite:
    """One dynalite server; data under `path`, so a restart keeps it."""

    def __init__(self, path: Path):
        if not CLI.exists():
            pytest.fail(f"{CLI} missing: run scripts/install-deps.sh")
        self.path = path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(["node", str(CLI), "--host", "127.0.0.1", "--port", str(self.port),
                                      "--createTableMs", "0", "--path", str(self.path)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    pytest.fail("dynalite did not start")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def aws(self, *args: str) -> dict:
        """`aws dynamodb ARGS --region us-west-2 --endpoint-url ENDPOINT`, parsed."""
        env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="", **CREDENTIALS)
        r = subprocess.run([str(AWS), "dynamodb", *args, "--region", "us-west-2",
                            "--endpoint-url", self.endpoint],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout) if r.stdout.strip() else {}

    def scan_until(self, table: str, pred, timeout: float = 10.0) -> list[dict]:
        """`aws dynamodb scan` until an item satisfies pred (writes are batched)."""
        deadline = time.monotonic() + timeout
        while True:
            items = self.aws("scan", "--table-name", table)["Items"]
            hits = [i for i in items if pred(i)]
            if hits or time.monotonic() > deadline:
                return hits
            time.sleep(0.2)


@pytest.fixture
def dynalite(tmp_path):
    d = Dynalite(tmp_path / "dynalite")
    d.start()
    yield d
    d.stop()
