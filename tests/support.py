"""Builders used across the test layers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx

from integrator.cli.local import local_session
from integrator.settings import Settings
from integrator.tokens import create_token

REPO_ROOT = Path(__file__).resolve().parent.parent


class TokenMaker:
    """Creates real tokens in the test's database: `tokens("operator")` → plain token."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.count = 0

    def __call__(self, role: str, name: str | None = None) -> str:
        self.count += 1
        with local_session(self.settings) as session:
            _, token = create_token(session, name=name or f"{role}-{self.count}", role=role)
        return token

    def bearer(self, role: str) -> dict[str, str]:
        """The Authorization header of a new token of `role`."""
        return {"Authorization": f"Bearer {self(role)}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a subprocess needs to see the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRATOR_")}
    return {**env, **settings.as_environment(), **extra}


class ServiceProcess:
    """`integrator serve` as a subprocess, ready when /healthz answers."""

    def __init__(self, settings: Settings, log_path: Path, port: int | None = None) -> None:
        self.settings = settings
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "integrator",
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=settings_env(self.settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"service did not start: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log:
            self._log.close()


def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The real CLI as a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "integrator", *args],
        env=env,
        cwd=cwd or REPO_ROOT,
        capture_output=True,
        text=True,
        input=input_text,
        timeout=60,
    )


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    import json

    return json.loads(result.stdout)
