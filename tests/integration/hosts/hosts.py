"""Real git hosts for the tests: Gitolite behind its own sshd, and `git http-backend` behind
lighttpd with basic auth. Each listens on 127.0.0.1 only, on a free port, runs as its own
unprivileged user, and is stopped by its PID.

The hosts need system packages (`make system-packages`) and root (to create the host users and
hand them their files); `missing_requirements` says what is absent.
"""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.gitrepos import GIT_ENV
from tests.support import free_port

#: The interpreter the hooks run with: the host users cannot execute a venv under /root.
HOOK_PYTHON = "/usr/bin/python3"
GITOLITE_USER = "integrator-gitolite"
WEB_USER = "integrator-www"
SERVER_PATH = "/usr/bin:/bin"
GIT_HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
SSHD = "/usr/sbin/sshd"
LIGHTTPD = "/usr/sbin/lighttpd"
#: Everything a host test needs on this machine, and the package that brings it.
REQUIRED = {
    SSHD: "openssh-server",
    "/usr/bin/gitolite": "gitolite3",
    LIGHTTPD: "lighttpd",
    GIT_HTTP_BACKEND: "git",
    "/usr/bin/ssh-keygen": "openssh-client",
    "/usr/bin/setpriv": "util-linux",
    "/usr/sbin/useradd": "passwd",
    HOOK_PYTHON: "python3",
}


def missing_requirements() -> list[str]:
    """What keeps the real hosts from running here (empty when they can)."""
    missing = [
        f"{path} ({package})" for path, package in REQUIRED.items() if not os.path.exists(path)
    ]
    if os.geteuid() != 0:
        missing.append("root (to create the host users and hand them their repositories)")
    return missing


def ensure_user(name: str, shell: str) -> pwd.struct_passwd:
    """A system user with no home of its own and no password, created once.

    Its HOME in passwd is `/` (sshd changes into it); each host sets the HOME it uses. Its
    password field is `*`, not useradd's `!`: sshd without PAM refuses every key of a locked
    account. Several test runs may get here at once: whoever loses the race for the password
    files tries again.
    """
    for _attempt in range(40):
        if _user_ready(name):
            return pwd.getpwnam(name)
        if name in {entry.pw_name for entry in pwd.getpwall()}:
            argv = ["usermod", "-d", "/", "-p", "*", name]
        else:
            argv = ["useradd", "--system", "--no-create-home", "--home-dir", "/", "-p", "*"]
            argv += ["--shell", shell, name]
        if subprocess.run(argv, capture_output=True, check=False).returncode != 0:
            time.sleep(0.25)
    raise RuntimeError(f"could not create the host user {name}")


def _user_ready(name: str) -> bool:
    try:
        if pwd.getpwnam(name).pw_dir != "/":
            return False
    except KeyError:
        return False
    for line in Path("/etc/shadow").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return len(fields) > 1 and fields[1] == "*"
    return False


def as_user(user: pwd.struct_passwd, *argv: str, home: Path | None = None) -> list[str]:
    """`argv` run as `user` with a clean environment (HOME only when given)."""
    env = [f"PATH={SERVER_PATH}", f"USER={user.pw_name}"] + ([f"HOME={home}"] if home else [])
    become = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    return ["setpriv", *become, "--", "env", "-i", *env, *argv]


def chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    for current, dirs, files in os.walk(path):
        for name in [current, *(os.path.join(current, n) for n in dirs + files)]:
            os.lchown(name, user.pw_uid, user.pw_gid)


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"host exited with {process.returncode}: {log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"host did not listen on 127.0.0.1:{port}: {log.read_text()}")


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """Stop a host by its PID (SIGTERM, then SIGKILL)."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def host_root() -> Path:
    """A fresh directory the host users can traverse (pytest's tmp_path is root's alone)."""
    root = Path(tempfile.mkdtemp(prefix="integrator-hosts-"))
    root.chmod(0o755)
    return root


def run(argv: list[str], what: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def git_as(user: pwd.struct_passwd, *args: str) -> str:
    return run(as_user(user, "git", *args), f"git {' '.join(args)} as {user.pw_name}")


class SshKeys:
    """One ed25519 key pair per name, readable by root only (the clients run as root)."""

    def __init__(self, folder: Path, *names: str) -> None:
        folder.mkdir(mode=0o700, exist_ok=True)
        self.folder = folder
        for name in names:
            key = folder / name
            run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                "ssh-keygen",
            )

    def private(self, name: str) -> Path:
        return self.folder / name

    def public(self, name: str) -> Path:
        return self.folder / f"{name}.pub"

    def ssh_command(self, name: str) -> str:
        """GIT_SSH_COMMAND for a client that authenticates as `name`."""
        return (
            f"ssh -F /dev/null -i {self.private(name)} -o IdentitiesOnly=yes -o BatchMode=yes "
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        )


class GitoliteHost:
    """Gitolite (home under `root`) behind an sshd of its own; users alice and integrator-bot.

    sshd runs as root (it must, to switch users) and hands every connection to the gitolite
    user; its HOME comes from the sshd configuration, so several hosts share one system user.
    """

    USERS = ("alice", "integrator-bot")

    def __init__(self, root: Path) -> None:
        self.user = ensure_user(GITOLITE_USER, "/bin/sh")
        self.root = root
        self.home = root / "gitolite"
        self.home.mkdir(mode=0o700)
        self.keys = SshKeys(root / "keys", "admin", *self.USERS)
        shutil.copy(self.keys.public("admin"), self.home / "admin.pub")
        chown_tree(self.home, self.user)
        self.gitolite("setup", "-pk", str(self.home / "admin.pub"))
        for name in self.USERS:
            keydir = self.home / ".gitolite" / "keydir"
            shutil.copy(self.keys.public(name), keydir / f"{name}.pub")
            chown_tree(keydir, self.user)
        self.sshd_dir = root / "sshd"
        self.sshd_dir.mkdir(mode=0o700)
        self.port = free_port()
        self.log = self.sshd_dir / "sshd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def rc(self) -> Path:
        return self.home / ".gitolite.rc"

    @property
    def conf(self) -> Path:
        return self.home / ".gitolite" / "conf" / "gitolite.conf"

    def repo_path(self, name: str) -> Path:
        return self.home / "repositories" / f"{name}.git"

    def url(self, name: str) -> str:
        return f"ssh://{self.user.pw_name}@127.0.0.1:{self.port}/{name}"

    def gitolite(self, *args: str) -> str:
        return run(as_user(self.user, "gitolite", *args, home=self.home), f"gitolite {args[0]}")

    def allow_config_key(self, pattern: str) -> None:
        """What an admin adds to .gitolite.rc so that gitolite.conf may set git config keys."""
        text = self.rc.read_text()
        marker = "GIT_CONFIG_KEYS                 =>  '',"
        assert marker in text, "unexpected .gitolite.rc"
        self.rc.write_text(text.replace(marker, f"GIT_CONFIG_KEYS => '{pattern}',"))

    def add_repo(self, name: str, *conf_lines: str) -> Path:
        """A repository writable by alice and integrator-bot, HEAD on main."""
        body = "".join(f"    {line}\n" for line in ("RW+ = alice integrator-bot", *conf_lines))
        with self.conf.open("a") as conf:
            conf.write(f"\nrepo {name}\n{body}")
        self.compile()
        path = self.repo_path(name)
        git_as(self.user, f"--git-dir={path}", "symbolic-ref", "HEAD", "refs/heads/main")
        return path

    def compile(self) -> None:
        self.gitolite("compile")
        self.gitolite("trigger", "POST_COMPILE")

    def start(self) -> GitoliteHost:
        host_key = self.sshd_dir / "host_ed25519"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], "ssh-keygen")
        config = self.sshd_dir / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"PidFile {self.sshd_dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.home / '.ssh' / 'authorized_keys'}\n"
            f"AllowUsers {self.user.pw_name}\nSetEnv HOME={self.home}\n"
            "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin no\nPrintMotd no\n"
            "LogLevel INFO\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for_port(self.port, self.process, self.log)
        return self

    def stop(self) -> None:
        stop(self.process)


class HttpHost:
    """`git http-backend` behind lighttpd with basic auth, all run as the web server's user.

    lighttpd starts with an empty environment: the hook gets no HOME, as under many web servers.
    """

    USERS = ("alice", "integrator-bot")

    def __init__(self, root: Path) -> None:
        self.user = ensure_user(WEB_USER, "/usr/sbin/nologin")
        self.root = root / "http"
        self.repos = self.root / "repos"
        self.logs = self.root / "logs"
        for folder in (self.root, self.repos, self.logs, self.root / "htdocs"):
            folder.mkdir(mode=0o755)
        self.passwords = {name: f"{name}-pw-{os.urandom(8).hex()}" for name in self.USERS}
        users = self.root / "users"
        users.write_text("".join(f"{u}:{p}\n" for u, p in self.passwords.items()))
        users.chmod(0o600)
        self.port = free_port()
        self.config = self.root / "lighttpd.conf"
        self.config.write_text(self._config(users))
        chown_tree(self.root, self.user)
        self.process: subprocess.Popen[bytes] | None = None

    def _config(self, users: Path) -> str:
        modules = ["mod_access", "mod_alias", "mod_auth", "mod_authn_file", "mod_cgi"]
        modules += ["mod_setenv", "mod_accesslog"]
        listed = ", ".join(f'"{m}"' for m in modules)
        return f"""
server.modules = ({listed})
server.bind = "127.0.0.1"
server.port = {self.port}
server.document-root = "{self.root / "htdocs"}"
server.errorlog = "{self.logs / "error.log"}"
accesslog.filename = "{self.logs / "access.log"}"
alias.url = ("/git" => "{GIT_HTTP_BACKEND}")
$HTTP["url"] =~ "^/git" {{
    cgi.assign = ("" => "")
    setenv.add-environment = ("GIT_PROJECT_ROOT" => "{self.repos}", "GIT_HTTP_EXPORT_ALL" => "")
}}
auth.backend = "plain"
auth.backend.plain.userfile = "{users}"
auth.require = ("/git" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
"""

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/git/{name}.git"

    def repo_path(self, name: str) -> Path:
        return self.repos / f"{name}.git"

    def add_repo(self, name: str) -> Path:
        path = self.repo_path(name)
        git_as(self.user, "init", "--quiet", "--bare", "--initial-branch=main", str(path))
        return path

    def authorization(self, name: str) -> str:
        """The Authorization header value a client sends as `name`."""
        pair = f"{name}:{self.passwords[name]}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def client_env(self, name: str, *headers: str) -> dict[str, str]:
        """git's environment for pushing as `name`: the credential in configuration from the
        environment, never in a URL or on a command line."""
        values = [f"Authorization: {self.authorization(name)}", *headers]
        env = {"GIT_CONFIG_COUNT": str(len(values))}
        for index, value in enumerate(values):
            env[f"GIT_CONFIG_KEY_{index}"] = "http.extraHeader"
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env

    def start(self) -> HttpHost:
        log = self.logs / "lighttpd.out"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                as_user(self.user, LIGHTTPD, "-D", "-f", str(self.config)),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for_port(self.port, self.process, log)
        return self

    def stop(self) -> None:
        stop(self.process)


def client_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **GIT_ENV, "GIT_TERMINAL_PROMPT": "0", **extra}
