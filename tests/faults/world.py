"""The system under faults: one database, one or two `integrator serve` replicas, the hooks
installed on a real canonical repository, a real `integrator worker` behind a cuttable proxy.

Every process is the real thing; the nemesis acts on them through the methods here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from integrator import migrate
from integrator.settings import Settings, get_settings
from tests.faults.proxy import CuttableProxy
from tests.gitrepos import SERVER_PATH, Canonical, git
from tests.support import REPO_ROOT, ServiceProcess, TokenMaker, free_port, run_cli, settings_env
from tests.worker_support import BOT, SHORT_LEASE

#: The hook's real default deadline: what a push may cost in every fault.
HOOK_DEADLINE = 2.5


class FaultWorld:
    def __init__(self, root: Path, database_url: str, replicas: int) -> None:
        self.root = root
        self.canonical = Canonical(root)
        self.base = self.canonical.head()
        self.settings: Settings = get_settings(
            database_url=database_url,
            mirror_dir=str(root / "mirrors"),
            repo=str(self.canonical.bare),
            **SHORT_LEASE,
        )
        migrate.upgrade(self.settings)
        tokens = TokenMaker(self.settings)
        self.replicas = [
            ServiceProcess(self.settings, root / f"replica{n}.log") for n in range(replicas)
        ]
        self.operator = {"Authorization": f"Bearer {tokens('operator')}"}
        self.reporter = {"Authorization": f"Bearer {tokens('reporter')}"}
        self.hook = {"Authorization": f"Bearer {tokens('hook')}"}
        self.integrator_token = tokens("integrator")
        self.hook_token = tokens("hook")
        self.proxy = CuttableProxy([r.port for r in self.replicas])
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_starts = 0
        #: Exits of the worker nobody asked for (it gave up): (exit code, last log lines).
        self.worker_exits: list[tuple[int, str]] = []
        self.hook_config = self.canonical.bare / "integrator" / "hook.json"
        self.hook_url = ""

    # -- start and stop --------------------------------------------------------------------

    def start(self) -> FaultWorld:
        for replica in self.replicas:
            replica.start()
        self.proxy.start()
        token_file = self.root / "hook.token"
        token_file.write_text(self.hook_token + "\n")
        env = settings_env(self.settings, INTEGRATOR_URL=self.replicas[0].url)
        installed = run_cli(
            "hooks", "install", str(self.canonical.bare), "--url", self.replicas[0].url,
            "--token-file", str(token_file), "--identity-source", "plain",
            "--deadline", str(HOOK_DEADLINE), env=env,
        )  # fmt: skip
        assert installed.returncode == 0, installed.stderr
        self.hook_url = self.replicas[0].url
        config = self.root / "worker.gitconfig"
        server = f"env -i PATH={SERVER_PATH} INTEGRATOR_PUSHER={BOT} git-receive-pack"
        git("config", "--file", str(config), "remote.origin.receivepack", server, cwd=self.root)
        self.start_worker()
        return self

    def close(self) -> None:
        self.stop_worker()
        self.proxy.close()
        for replica in self.replicas:
            if replica.process and replica.process.poll() is None:
                replica.process.send_signal(signal.SIGCONT)
            replica.stop()

    # -- the worker ------------------------------------------------------------------------

    def start_worker(self) -> None:
        self.worker_starts += 1
        env = settings_env(
            self.settings,
            INTEGRATOR_URL=self.proxy.url,
            INTEGRATOR_TOKEN=self.integrator_token,
            GIT_CONFIG_GLOBAL=str(self.root / "worker.gitconfig"),
        )
        with (self.root / "worker.log").open("ab") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "integrator", "worker", "--repo", str(self.canonical.bare),
                 "--workspace", str(self.root / "ws"), "--poll-interval", "0.5",
                 "--holder", f"bot-{self.worker_starts}"],
                env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def stop_worker(self) -> None:
        if self.worker and self.worker.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.worker.pid, signal.SIGCONT)
                self.worker.kill()
            self.worker.wait(timeout=10)

    def kill_worker(self) -> None:
        self.stop_worker()
        self.start_worker()

    def ensure_worker(self) -> None:
        """Start the worker again if it exited on its own, recording that it did."""
        if self.worker is not None and self.worker.poll() is not None:
            lines = (self.root / "worker.log").read_text(errors="replace").splitlines()
            self.worker_exits.append((self.worker.returncode, "\n".join(lines[-5:])))
        if self.worker is None or self.worker.poll() is not None:
            self.start_worker()

    def unhandled_errors(self) -> list[str]:
        """The replicas' logged internal errors (each a 500 some caller got)."""
        return [
            line
            for replica in self.replicas
            for line in replica.log_path.read_text(errors="replace").splitlines()
            if "unhandled error" in line
        ]

    # -- replicas and the hook's endpoint -------------------------------------------------

    @staticmethod
    def start_again(replica: ServiceProcess) -> None:
        """Start a killed replica on its port again (its old log handle closed first)."""
        if replica._log:
            replica._log.close()
        replica.start(timeout=60)

    def point_hook(self, url: str) -> None:
        """Rewrite the installed hook's service URL (atomically: a push may be reading it)."""
        config = json.loads(self.hook_config.read_text())
        config["url"] = url
        temporary = self.hook_config.with_suffix(".tmp")
        temporary.write_text(json.dumps(config))
        temporary.chmod(0o600)
        temporary.replace(self.hook_config)
        self.hook_url = url

    def dead_url(self) -> str:
        return f"http://127.0.0.1:{free_port()}"

    def hook_cached_mode(self) -> str | None:
        path = self.canonical.bare / "integrator" / "state" / "last.json"
        try:
            mode: str | None = json.loads(path.read_text()).get("mode")
        except (OSError, ValueError):
            return None
        return mode

    # -- the API, retried through any replica ---------------------------------------------

    def call(
        self, method: str, path: str, headers: dict[str, str], body: Any = None, tries: int = 40
    ) -> httpx.Response | None:
        """The first answer below 500 from any replica, trying them in turn; None if none."""
        for attempt in range(tries):
            replica = self.replicas[attempt % len(self.replicas)]
            try:
                response = httpx.request(
                    method, f"{replica.url}{path}", json=body, headers=headers, timeout=5
                )
            except httpx.TransportError:
                time.sleep(0.25)
                continue
            if response.status_code < 500:
                return response
            time.sleep(0.25)
        return None
