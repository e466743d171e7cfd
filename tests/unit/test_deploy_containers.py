"""deploy/Containerfile and deploy/compose.yaml hold together without a container engine.

Nothing here builds or starts a container: the files are read and checked against the code they
run — real settings, real commands and options, the real health route, one port everywhere, the
wheel build's own inputs. The compose checks parse YAML; without PyYAML they skip and say so.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
from fastapi.testclient import TestClient

from integrator.api.app import create_app
from integrator.cli import app as cli_app
from integrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CONTAINERFILE = DEPLOY / "Containerfile"
COMPOSE = DEPLOY / "compose.yaml"
SETTINGS = {f"INTEGRATOR_{name.upper()}" for name in Settings.model_fields}
#: Interpolated by compose from deploy/.env, and not an Integrator setting.
COMPOSE_ONLY_VARIABLES = {"POSTGRES_PASSWORD"}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


# ---- the Containerfile, read as instructions ---------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", path.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions(CONTAINERFILE)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def one(keyword: str) -> str:
    found = [rest for word, rest in final_stage() if word == keyword]
    assert len(found) == 1, f"the final stage has {len(found)} {keyword} instructions"
    return found[0]


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) argument list; shell form is refused (signals, PID 1)."""
    assert arguments.startswith("["), f"use the exec form: {arguments}"
    words = re.findall(r'"((?:[^"\\]|\\.)*)"', arguments)
    return [w.encode().decode("unicode_escape") for w in words]


def port_option(argv: list[str]) -> int:
    return int(argv[argv.index("--port") + 1])


def served_port() -> int:
    return port_option(exec_form(one("CMD")))


# ---- the command line, as click sees it --------------------------------------------------------


def resolve_command(argv: list[str]) -> tuple[Any, list[str]]:
    """The `integrator …` subcommand `argv` names, and the words after it."""
    assert argv[0] == "integrator", argv
    command: Any = typer.main.get_command(cli_app)
    words = argv[1:]
    while hasattr(command, "commands") and words and not words[0].startswith("-"):
        assert words[0] in command.commands, f"no command `{' '.join(argv)}`"
        command = command.commands[words[0]]
        words = words[1:]
    return command, words


def assert_real_command(argv: list[str]) -> None:
    """Every subcommand and every --option of `argv` exists in the CLI."""
    command, words = resolve_command(argv)
    options = {opt for param in command.params for opt in param.opts}
    unknown = [w.split("=")[0] for w in words if w.startswith("--")]
    assert set(unknown) <= options, f"`{' '.join(argv)}`: unknown {set(unknown) - options}"


def test_the_image_is_built_on_python_slim_and_runs_as_an_unprivileged_user() -> None:
    """The final stage starts FROM a python slim image and switches to a non-root USER."""
    base = final_stage()[0][1]
    assert re.match(r"python:\S*-slim", base.replace("${PYTHON_VERSION}", "3")), base
    user = one("USER").split(":")[0]
    assert user not in ("root", "0"), user


def test_the_image_installs_the_projects_wheel_not_the_source_tree() -> None:
    """A build stage makes wheels with `pip wheel`; the final stage installs `integrator`
    from them, so hooks and migrations come from the wheel as for any `pip install`."""
    steps = instructions(CONTAINERFILE)
    assert any(k == "RUN" and "pip wheel" in rest for k, rest in steps), "no wheel is built"
    installs = [rest for k, rest in final_stage() if k == "RUN" and "pip install" in rest]
    assert len(installs) == 1 and "--no-index" in installs[0], installs
    assert re.search(r"\bintegrator\s*$", installs[0]), installs[0]
    copies = [rest for k, rest in final_stage() if k == "COPY"]
    assert all("--from=" in rest for rest in copies), f"source copied into the image: {copies}"


def test_the_build_copies_everything_the_wheel_build_reads_and_the_ignore_file_keeps_it() -> None:
    """pyproject.toml's packages, force-included folders and readme are each COPYed, and the
    Containerfile's own ignore file (an allow-list) lets each of them into the context."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", project["project"]["readme"], *wheel["packages"]}
    needed |= set(wheel.get("force-include", {}))
    copied = {
        word.rstrip("/")
        for k, rest in instructions(CONTAINERFILE)
        if k == "COPY" and "--from=" not in rest
        for word in rest.split()[:-1]
    }
    assert needed <= copied, f"the build does not copy {sorted(needed - copied)}"
    ignore = CONTAINERFILE.with_name(CONTAINERFILE.name + ".dockerignore").read_text()
    patterns = [line for line in ignore.splitlines() if line and not line.startswith("#")]
    assert patterns[0] == "*", "the ignore file must start by leaving everything out"
    allowed = {line[1:] for line in patterns if line.startswith("!")}
    assert needed <= allowed, f"the ignore file keeps out {sorted(needed - allowed)}"


def test_the_default_command_is_integrator_serve_on_all_interfaces_of_the_exposed_port() -> None:
    """CMD is a real `integrator serve --host 0.0.0.0 --port P` and EXPOSE names that P."""
    argv = exec_form(one("CMD"))
    assert_real_command(argv)
    assert resolve_command(argv)[0].name == "serve"
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert one("EXPOSE").split("/")[0] == str(served_port())


def test_the_healthcheck_asks_the_services_own_health_route_on_its_port() -> None:
    """HEALTHCHECK fetches http://127.0.0.1:P/healthz, a route the app serves without a token."""
    check = one("HEALTHCHECK")
    urls = re.findall(r"https?://[^'\"\s]+", check)
    assert len(urls) == 1, check
    url = urlsplit(urls[0])
    assert url.port == served_port()
    assert url.path == "/healthz"
    assert TestClient(create_app()).get(url.path).status_code == 200, "the app does not serve it"
    assert " CMD " in f" {check} " and "--timeout=" in check, check


def test_every_integrator_variable_in_the_container_files_is_a_setting() -> None:
    """An INTEGRATOR_* name in the Containerfile or compose.yaml is a field of Settings."""
    for path in (CONTAINERFILE, COMPOSE):
        named = set(re.findall(r"\b(INTEGRATOR_[A-Z0-9_]+)\b", path.read_text()))
        assert named <= SETTINGS, f"{path.name}: not settings: {sorted(named - SETTINGS)}"


def test_compose_interpolates_only_settings_and_the_database_password() -> None:
    """Every ${VAR} compose substitutes is a setting or the one password it documents."""
    variables = set(INTERPOLATION.findall(COMPOSE.read_text()))
    unknown = variables - SETTINGS - COMPOSE_ONLY_VARIABLES
    assert unknown == set(), f"compose.yaml substitutes unknown variables {sorted(unknown)}"


# ---- compose.yaml, parsed --------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML is not installed: compose.yaml is checked only textually"
    )
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert {"db", "migrate", "service", "worker"} <= set(found), sorted(found)
    return found  # type: ignore[no-any-return]


def command_of(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return command if isinstance(command, list) else shlex.split(command)


def substituted(value: str) -> str:
    """A compose value with each ${VAR…} replaced by a sample, as compose would at run time."""
    return re.sub(r"\$\{[^}]*\}", "sample", value)


def test_the_integrator_services_are_built_from_the_containerfile(compose: dict[str, Any]) -> None:
    """migrate, service and worker build deploy/Containerfile from the checkout's top."""
    for name in ("migrate", "service", "worker"):
        build = services(compose)[name]["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT and (context / build["dockerfile"]) == CONTAINERFILE, name


def test_every_compose_command_is_a_real_integrator_command(compose: dict[str, Any]) -> None:
    """Each integrator service runs a subcommand, with options, that the CLI has."""
    for name in ("migrate", "service", "worker"):
        assert_real_command(command_of(services(compose)[name]))


def test_migrations_run_before_the_service_starts(compose: dict[str, Any]) -> None:
    """`integrator db upgrade` runs once PostgreSQL is healthy; the service waits for it to
    finish successfully, and it is not restarted after doing so."""
    found = services(compose)
    migrate = found["migrate"]
    assert command_of(migrate)[1:] == ["db", "upgrade"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    assert found["service"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert "test" in found["db"]["healthcheck"]


def test_the_worker_starts_once_the_service_is_healthy_and_reaches_it_by_name(
    compose: dict[str, Any],
) -> None:
    """worker depends on service being healthy (the image's HEALTHCHECK, not disabled for
    the service) and its INTEGRATOR_URL names that service on the port it serves."""
    found = services(compose)
    worker = found["worker"]
    assert worker["depends_on"]["service"]["condition"] == "service_healthy"
    assert not found["service"].get("healthcheck", {}).get("disable", False)
    url = urlsplit(worker["environment"]["INTEGRATOR_URL"])
    assert (url.hostname, url.port) == ("service", served_port())
    assert "INTEGRATOR_DATABASE_URL" not in worker.get("environment", {}), "the worker uses HTTP"


def test_processes_that_serve_nothing_do_not_inherit_the_http_healthcheck(
    compose: dict[str, Any],
) -> None:
    """migrate and worker turn the image's /healthz check off: they would never be healthy."""
    for name in ("migrate", "worker"):
        assert services(compose)[name]["healthcheck"] == {"disable": True}, name


def test_the_published_port_is_the_port_the_service_serves(compose: dict[str, Any]) -> None:
    """service's `ports` target, its `serve --port` and the image's port are one number."""
    service = services(compose)["service"]
    assert port_option(command_of(service)) == served_port()
    targets = {int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in service["ports"]}
    assert targets == {served_port()}


def test_the_database_url_names_the_postgresql_service_its_user_and_database(
    compose: dict[str, Any],
) -> None:
    """migrate and service share one INTEGRATOR_DATABASE_URL: postgresql on `db`, with the
    user and database the PostgreSQL container creates; Settings accepts it."""
    found = services(compose)
    db = found["db"]["environment"]
    urls = {found[n]["environment"]["INTEGRATOR_DATABASE_URL"] for n in ("migrate", "service")}
    assert len(urls) == 1
    url = urlsplit(substituted(urls.pop()))
    assert url.scheme.startswith("postgresql") and url.hostname == "db"
    assert (url.username, url.path.lstrip("/")) == (db["POSTGRES_USER"], db["POSTGRES_DB"])
    Settings(database_url=url.geturl())


def test_postgresql_keeps_its_data_in_a_declared_named_volume(compose: dict[str, Any]) -> None:
    """db mounts a top-level named volume on PostgreSQL's data directory."""
    mounts = [str(v).split(":") for v in services(compose)["db"]["volumes"]]
    data = [source for source, target, *_ in mounts if target == "/var/lib/postgresql/data"]
    assert len(data) == 1 and data[0] in compose["volumes"], mounts


def test_env_files_are_copies_of_the_examples_in_deploy(compose: dict[str, Any]) -> None:
    """Every env_file is deploy/NAME whose example deploy/NAME.example exists; the service
    and migrate read the service's, the worker the worker's."""
    for name, service in services(compose).items():
        for env_file in service.get("env_file", []):
            path = env_file if isinstance(env_file, str) else env_file["path"]
            assert (COMPOSE.parent / f"{path}.example").is_file(), f"{name}: {path}"
    assert services(compose)["worker"]["env_file"] == ["integrator-worker.env"]
    assert services(compose)["service"]["env_file"] == ["integrator.env"]


def test_every_environment_value_compose_sets_is_accepted_by_settings(
    compose: dict[str, Any],
) -> None:
    """The INTEGRATOR_* values compose sets pass the settings' own validation."""
    for name, service in services(compose).items():
        values = {
            key.removeprefix("INTEGRATOR_").lower(): substituted(str(value))
            for key, value in service.get("environment", {}).items()
            if key.startswith("INTEGRATOR_")
        }
        try:
            Settings(**values)
        except ValueError as exc:
            pytest.fail(f"{name}: {exc}")
