"""The deployment files say what the code and Dagster accept: checked here without a container engine.

- ``docker-compose.yaml``: every project service runs a command of the Dockerfile (the ones
  ``tests/e2e/test_image_commands.py`` runs), parsed by the real command-line parsers; secrets are
  only required ``${VAR:?…}`` references; the environment is one the platform's settings read;
  services wait for what they need.
- ``deploy/workspace.grpc.yaml``: Dagster's workspace schema, and it names the compose code server.
- ``deploy/kubernetes/dagster.yaml`` and the root ``dagster.yaml``: Dagster's instance schema, each
  configurable class against its own ``config_type()`` (the K8sRunLauncher's from dagster-k8s),
  and the Kubernetes Job that dagster-k8s builds from the launcher's config.

Each validator is also shown a broken copy, so a check that accepts anything would fail here.
"""

from __future__ import annotations

import copy
import importlib
import importlib.metadata
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import typer
import yaml
from dagster._config import validate_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.remote_origin import GrpcServerCodeLocationOrigin
from dagster._core.workspace.config_schema import ensure_workspace_config
from dagster._core.workspace.load import location_origins_from_yaml_paths
from dagster._serdes import ConfigurableClassData, class_from_code_pointer
from sqlalchemy.engine import make_url

from etl_assets.settings import VARIABLES, Settings
from tests.e2e.test_image_commands import ROLES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
GRPC_WORKSPACE = ROOT / "deploy" / "workspace.grpc.yaml"
K8S_INSTANCE = ROOT / "deploy" / "kubernetes" / "dagster.yaml"
ROOT_INSTANCE = ROOT / "dagster.yaml"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
DEPLOY_README = (ROOT / "deploy" / "README.md").read_text()

# The Dockerfile's role of each service that runs the project's image.
ROLE_OF_SERVICE = {
    "migrate": "migrations",
    "code-server": "code server",
    "webserver": "webserver",
    "daemon": "daemon",
    "collector": "collector",
}
# Variables a deployment must be given: compose stops with the message when one is missing.
REQUIRED_VARIABLES = {"POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "ETL_PII_KEY"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|WRITE_KEYS|WEBHOOK_URL|DATABASE_URL|PG_URL|PII_KEY")
# Variables of AWS and Dagster themselves that the project's settings do not list.
KNOWN_FOREIGN_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DAGSTER_HOME"}
OUR_PREFIXES = ("ETL_", "DATABASE_", "DAGSTER_", "AWS_")
SETTINGS_NAMES = {variable.name for variable in VARIABLES}
IMAGE_DAGSTER_HOME = re.search(r"DAGSTER_HOME=(\S+)", DOCKERFILE).group(1)


# --- compose interpolation, as `docker compose` does it -------------------------------------------

_REFERENCE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.DOTALL)


class MissingVariable(Exception):
    pass


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def references(node: Any) -> list[tuple[str, str | None, str]]:
    """Every ``${NAME<op><arg>}`` / ``$NAME`` in the strings of ``node`` as (name, op, arg); ``$$`` is an escape."""
    found = []
    for text in _strings(node):
        for match in _REFERENCE.finditer(text):
            if match["escaped"]:
                continue
            if match["bare"]:
                found.append((match["bare"], None, ""))
                continue
            braced = _BRACED.fullmatch(match["braced"])
            assert braced, f"not a valid interpolation: ${{{match['braced']}}}"
            found.append((braced["name"], braced["op"], braced["arg"] or ""))
    return found


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """``node`` with every reference replaced the way compose does (``:-``, ``-``, ``:?``, ``?``, ``$$``)."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["bare"]:
            return env.get(match["bare"], "")
        braced = _BRACED.fullmatch(match["braced"])
        name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
        value = env.get(name)
        unset_or_empty = not value
        if op == ":-":
            return arg if unset_or_empty else value
        if op == "-":
            return arg if value is None else value
        if op in (":?", "?") and (unset_or_empty if op == ":?" else value is None):
            raise MissingVariable(f"{name}: {arg}")
        if op in (":+", "+"):
            return arg if value else ""
        return value or ""

    if isinstance(node, str):
        return _REFERENCE.sub(one, node)
    if isinstance(node, Mapping):
        return {interpolate(key, env): interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    return node


# Each required variable gets a URL-safe value that names it, so a rendered value shows where it came from.
SENTINELS = {name: f"sentinel-{name.lower().replace('_', '-')}" for name in REQUIRED_VARIABLES}
RENDERED = interpolate(COMPOSE, SENTINELS)


def project_services() -> dict[str, dict[str, Any]]:
    return {name: service for name, service in SERVICES.items() if "build" in service}


# --- command lines, parsed by the commands' own parsers -------------------------------------------


# The image's executables: the module of each console script and the click command (or Typer app) in it.
CLI_OBJECTS = {
    "etl": ("etl_assets.cli", "app"),
    "dagster": ("dagster._cli", "cli"),
    "dagster-webserver": ("dagster_webserver.cli", "cli"),
    "dagster-daemon": ("dagster._daemon.cli", "cli"),
}


def is_usage_error(error: BaseException) -> bool:
    """click's UsageError, or the one of the click that Typer vendors."""
    return any(cls.__name__ == "UsageError" for cls in type(error).__mro__)


def parse_command_line(argv: list[str]) -> Any:
    """The context the real CLI builds for ``argv`` (nothing runs); a wrong option raises a UsageError."""
    executable, *args = argv
    scripts = {entry.name: entry.value for entry in importlib.metadata.entry_points(group="console_scripts")}
    assert executable in scripts, f"{executable} is not installed in the project's environment"
    module, attribute = CLI_OBJECTS[executable]
    assert scripts[executable].split(":")[0] == module, f"{executable} is {scripts[executable]}, not {module}"
    command = getattr(importlib.import_module(module), attribute)
    if isinstance(command, typer.Typer):
        command = typer.main.get_command(command)
    name, parent = executable, None
    # Groups by what they do: Typer ships a click of its own, whose classes are not click's.
    while hasattr(command, "get_command"):
        assert args, f"{' '.join(argv)}: {name} needs a subcommand"
        word, *args = args
        context = command.context_class(command, info_name=name, parent=parent)
        subcommand = command.get_command(context, word)
        assert subcommand is not None, f"{' '.join(argv)}: {name} has no subcommand {word!r}"
        name, parent, command = word, context, subcommand
    return command.make_context(name, list(args), parent=parent)


def local_path(container_path: str) -> Path:
    """A file under the image's WORKDIR /app, in this checkout (the compose file mounts it from here)."""
    assert container_path.startswith("/app/")
    return ROOT / container_path.removeprefix("/app/")


def service_command_params(service_name: str) -> Mapping[str, Any]:
    """The options a project service's command parses to (its workspace file read from this checkout)."""
    command = list(SERVICES[service_name]["command"])
    if "-w" in command:
        index = command.index("-w") + 1
        command[index] = str(local_path(command[index]))  # the CLI checks that the file exists
    return parse_command_line(command).params


def workspace_mount(service: Mapping[str, Any], command: list[str]) -> str:
    path = command[command.index("-w") + 1]
    assert f"./deploy/workspace.grpc.yaml:{path}:ro" in service.get("volumes", []), (
        f"{path} is not the gRPC workspace mounted read-only"
    )
    return path


# --- docker-compose.yaml: services, commands ------------------------------------------------------


def test_compose_has_the_platform_services():
    assert set(SERVICES) == {
        "postgres",
        "minio",
        "minio-buckets",
        "migrate",
        "code-server",
        "webserver",
        "daemon",
        "collector",
    }
    assert SERVICES["postgres"]["image"] == "postgres:16"
    assert set(project_services()) == set(ROLE_OF_SERVICE)


def test_project_services_share_one_image_and_environment_through_anchors():
    base_env = COMPOSE["x-etl-env"]
    images = {(service["image"], service["build"]["context"]) for service in project_services().values()}
    assert images == {(COMPOSE["x-etl-app"]["image"], ".")}
    for name, service in project_services().items():
        assert base_env.items() <= service["environment"].items(), f"{name} lacks part of x-etl-env"
    # The anchors are really used: the file repeats no environment.
    text = COMPOSE_FILE.read_text()
    assert text.count("DAGSTER_PG_URL:") == 1
    assert "&etl-env" in text and "*etl-env" in text and "&etl-app" in text


def test_every_role_of_the_dockerfile_runs_as_written():
    """Each project service runs one of the Dockerfile's commands; only the workspace file differs."""
    assert set(ROLE_OF_SERVICE.values()) == set(ROLES)
    for name, service in project_services().items():
        expected = ROLES[ROLE_OF_SERVICE[name]].split()
        command = service["command"]
        assert isinstance(command, list), f"{name}: write the command as a list (no shell in between)"
        if "-w" in expected:
            # The webserver and the daemon read the gRPC workspace instead of the image's python_module one.
            assert command[: command.index("-w")] == expected[: expected.index("-w")]
            assert len(command) == len(expected)
            assert workspace_mount(service, command) == "/app/deploy/workspace.grpc.yaml"
        else:
            assert command == expected, f"{name}: {command} is not the Dockerfile's {expected}"


@pytest.mark.parametrize("service_name", sorted(ROLE_OF_SERVICE))
def test_the_command_parses_with_the_real_cli(service_name):
    params = service_command_params(service_name)
    if service_name == "code-server":
        assert params["module_name"] == "etl_assets.definitions"
        assert (params["host"], params["port"]) == ("0.0.0.0", 4000)
    elif service_name == "webserver":
        assert (params["host"], params["port"]) == ("0.0.0.0", 3000)
        assert params["workspace"] == (str(GRPC_WORKSPACE),)
    elif service_name == "daemon":
        assert params["workspace"] == (str(GRPC_WORKSPACE),)
    elif service_name == "collector":
        assert params["host"] == "0.0.0.0"


@pytest.mark.parametrize(
    "argv",
    [
        ["dagster", "code-server", "start", "-h", "0.0.0.0", "--prot", "4000"],
        ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "/nowhere/workspace.yaml"],
        ["etl", "collector", "--hots", "0.0.0.0"],
        ["etl", "migrate", "--now"],
    ],
    ids=["dagster-unknown-option", "webserver-missing-workspace", "etl-unknown-option", "etl-extra-option"],
)
def test_a_wrong_command_line_does_not_parse(argv):
    with pytest.raises(Exception) as error:
        parse_command_line(argv)
    assert is_usage_error(error.value), repr(error.value)


def test_a_wrong_subcommand_does_not_parse():
    with pytest.raises(AssertionError, match="no subcommand"):
        parse_command_line(["dagster", "code-servers", "start"])
    with pytest.raises(AssertionError, match="no subcommand"):
        parse_command_line(["etl", "migrations"])


def test_healthchecks_run_commands_that_exist():
    for name, service in SERVICES.items():
        if name in ("migrate", "minio-buckets"):
            assert "healthcheck" not in service  # one shots: they exit
            continue
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", f"{name}: an exec-form healthcheck (no shell)"
        argv = test[1:]
        if name not in project_services():
            continue  # postgres' pg_isready and minio's mc ship in their images
        if argv[0] == "python":
            # An HTTP probe of the service's own port (the slim image has no curl).
            assert argv[1] == "-c"
            compile(argv[2], f"{name} healthcheck", "exec")
            port = int(re.search(r"//127\.0\.0\.1:(\d+)/", argv[2]).group(1))
            if name == "collector":
                assert port == Settings.from_env(RENDERED["services"][name]["environment"]).collector_port
            else:
                assert port == service_command_params(name)["port"]
        else:
            parse_command_line(argv)
    assert SERVICES["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert SERVICES["code-server"]["healthcheck"]["test"][1:] == ["dagster", "api", "grpc-health-check", "-p", "4000"]


def test_collector_listens_where_its_port_is_published():
    published = SERVICES["collector"]["ports"]
    collector_port = Settings.from_env(RENDERED["services"]["collector"]["environment"]).collector_port
    assert published == [f"${{BIND_ADDRESS:-127.0.0.1}}:{collector_port}:{collector_port}"]


# --- docker-compose.yaml: variables and secrets ---------------------------------------------------


def test_every_variable_is_required_or_has_a_default():
    refs = references(COMPOSE)
    assert refs, "the compose file reads no variables at all?"
    for name, op, arg in refs:
        assert op in (":?", ":-"), f"${name} without :? or :- is silently empty when unset"
        if op == ":?":
            assert name in REQUIRED_VARIABLES, f"{name} is required: add it to the README's start command"
            assert name in arg, f"${{{name}:?…}}: say which variable to set"
        if SECRET_NAME.search(name):
            assert op == ":?" or arg == "", f"{name} is a secret: no default value in the file"
    assert {name for name, op, _ in refs if op == ":?"} == REQUIRED_VARIABLES


def test_the_start_command_names_every_required_variable():
    for text in (COMPOSE_FILE.read_text(), DEPLOY_README):
        start = re.search(r"((?:[A-Z_]+=\S+ )+)docker compose up -d", text)
        assert start, "no start command with its variables"
        assert set(re.findall(r"([A-Z_]+)=", start.group(1))) == REQUIRED_VARIABLES


@pytest.mark.parametrize("missing", sorted(REQUIRED_VARIABLES))
def test_compose_refuses_to_start_without_a_required_variable(missing):
    env = {name: value for name, value in SENTINELS.items() if name != missing}
    with pytest.raises(MissingVariable, match=missing):
        interpolate(COMPOSE, env)
    with pytest.raises(MissingVariable, match=missing):
        interpolate(COMPOSE, {**env, missing: ""})  # `:?` refuses an empty value too


def test_the_environment_is_one_the_platform_reads():
    for name, service in RENDERED["services"].items():
        environment = service.get("environment", {})
        assert isinstance(environment, Mapping), f"{name}: environment as a mapping"
        for variable in environment:
            if variable.startswith(OUR_PREFIXES):
                assert variable in SETTINGS_NAMES | KNOWN_FOREIGN_VARIABLES, (
                    f"{name} sets {variable}, which neither etl_assets.settings.VARIABLES nor AWS/Dagster know"
                )
    for name in project_services():
        env = RENDERED["services"][name]["environment"]
        assert env["DAGSTER_HOME"] == IMAGE_DAGSTER_HOME
        settings = Settings.from_env(env)  # every value parses
        assert settings.s3_is_external and settings.s3_endpoint_url == "http://minio:9000"
        assert settings.warehouse_url.host == "postgres"
        assert settings.dagster_pg_url is not None


def test_no_secret_is_written_in_the_file():
    # Every URL with credentials takes its password from a required variable.
    userinfos = [userinfo for text in _strings(COMPOSE) for userinfo in re.findall(r"://([^/@]+)@", text)]
    assert len(userinfos) >= 2  # the two database URLs, at least
    for userinfo in userinfos:
        assert ":" in userinfo
        password = userinfo.split(":", 1)[1]
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", password), f"a literal password: {userinfo}"
    # Every other secret-looking setting is a reference only: a required variable, or empty by default.
    for name, service in COMPOSE["services"].items():
        for variable, value in (service.get("environment") or {}).items():
            if variable.startswith(("DATABASE_", "DAGSTER_PG")):
                continue  # URLs: checked above and below
            if SECRET_NAME.search(variable) or variable.startswith("AWS_ACCESS_KEY"):
                assert re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]*|:-)\}", str(value)), f"{name}: {variable}={value!r}"


def test_source_secrets_reach_only_the_service_that_uses_them():
    where = {
        "ETL_SEGMENT_WRITE_KEYS": {"collector"},
        "ETL_WEBHOOK_SECRETS": {"collector"},
        # Sensors tick and runs execute in the code server (the default run launcher starts them there).
        "ETL_EVENTS_API_TOKEN": {"code-server"},
        "ETL_ALERT_WEBHOOK_URL": {"code-server"},
    }
    for variable, services in where.items():
        assert {name for name, service in SERVICES.items() if variable in service.get("environment", {})} == services


def test_database_urls_point_at_the_compose_postgres_with_the_right_drivers():
    postgres = RENDERED["services"]["postgres"]["environment"]
    env = RENDERED["x-etl-env"]
    warehouse, dagster = make_url(env["DATABASE_URL"]), make_url(env["DAGSTER_PG_URL"])
    for url in (warehouse, dagster):
        assert (url.host, url.port, url.username) == ("postgres", 5432, postgres["POSTGRES_USER"])
        assert url.password == postgres["POSTGRES_PASSWORD"] == SENTINELS["POSTGRES_PASSWORD"]
    assert warehouse.database == postgres["POSTGRES_DB"]
    # Dagster's storage needs psycopg2 named (SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3).
    assert dagster.drivername == "postgresql+psycopg2"
    # ... in a database the init script creates.
    init = COMPOSE["configs"]["postgres-init"]["content"]
    assert f"CREATE DATABASE {dagster.database};" in init
    target = SERVICES["postgres"]["configs"][0]
    assert target["source"] == "postgres-init"
    assert target["target"].startswith("/docker-entrypoint-initdb.d/") and target["target"].endswith(".sql")


def test_s3_settings_point_at_minio_and_the_buckets_it_creates():
    env = RENDERED["x-etl-env"]
    minio = RENDERED["services"]["minio"]["environment"]
    assert env["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"] == SENTINELS["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"] == SENTINELS["MINIO_ROOT_PASSWORD"]
    assert env["AWS_ENDPOINT_URL_S3"] == "http://minio:9000"
    buckets = RENDERED["services"]["minio-buckets"]
    script = buckets["command"][0]
    assert "mc mb --ignore-existing" in script
    for variable in ("ETL_LANDING_BUCKET", "ETL_ARCHIVE_BUCKET"):
        assert buckets["environment"][variable] == env[variable]
        assert f"platform/${variable}" in script  # `$$` in the file: the container's shell expands it
    # Credentials stay out of the command line (`ps` and `docker inspect` would show them).
    assert "sentinel-" not in script


def test_ports_are_published_on_the_loopback_by_default():
    published = {}
    for name, service in RENDERED["services"].items():
        for port in service.get("ports", []):
            host, host_port, container_port = port.split(":")
            assert host == "127.0.0.1", f"{name} publishes {port} beyond the loopback"
            published[name, int(container_port)] = int(host_port)
    assert published[("webserver", 3000)] == 3000
    assert published[("collector", 9200)] == 9200
    assert not any(name == "postgres" for name, _ in published)
    assert interpolate(SERVICES["webserver"]["ports"], {"BIND_ADDRESS": "10.0.0.5"}) == ["10.0.0.5:3000:3000"]


# --- docker-compose.yaml: start order -------------------------------------------------------------


def _depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on", {})
    assert isinstance(depends, Mapping), "depends_on with conditions, not a bare list"
    return {name: spec["condition"] for name, spec in depends.items()}


def test_services_wait_for_what_they_need():
    for name in project_services():
        assert _depends_on(SERVICES[name]).get("postgres") == "service_healthy", f"{name} must wait for postgres"
    for name in ("code-server", "collector"):
        depends = _depends_on(SERVICES[name])
        assert depends["migrate"] == "service_completed_successfully", f"{name} writes: schema first"
        assert depends["minio-buckets"] == "service_completed_successfully", f"{name} writes to the buckets"
    for name in ("webserver", "daemon"):
        assert _depends_on(SERVICES[name])["code-server"] == "service_healthy"
    assert _depends_on(SERVICES["minio-buckets"]) == {"minio": "service_healthy"}
    assert _depends_on(SERVICES["migrate"]) == {"postgres": "service_healthy"}


def test_conditions_are_ones_their_targets_can_meet():
    for name, service in SERVICES.items():
        for target, condition in _depends_on(service).items():
            assert target in SERVICES
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{name} waits for {target} to be healthy: it has no check"
            elif condition == "service_completed_successfully":
                assert SERVICES[target]["restart"] == "no", f"{target} is a one shot: it must not restart"
            else:
                raise AssertionError(f"{name} -> {target}: {condition}")
    # No cycle: every service can start.
    started: set[str] = set()
    while len(started) < len(SERVICES):
        ready = {name for name in SERVICES if name not in started and set(_depends_on(SERVICES[name])) <= started}
        assert ready, f"a cycle among {set(SERVICES) - started}"
        started |= ready


def test_long_running_services_restart_and_one_shots_do_not():
    for name, service in SERVICES.items():
        expected = "no" if name in ("migrate", "minio-buckets") else "unless-stopped"
        assert service["restart"] == expected, name


# --- the gRPC workspace ---------------------------------------------------------------------------


def test_grpc_workspace_validates_and_points_at_the_compose_code_server():
    config = yaml.safe_load(GRPC_WORKSPACE.read_text())
    ensure_workspace_config(config, str(GRPC_WORKSPACE))
    [origin] = location_origins_from_yaml_paths([str(GRPC_WORKSPACE)])
    assert isinstance(origin, GrpcServerCodeLocationOrigin)
    code_server = service_command_params("code-server")
    assert origin.host == "code-server" and "code-server" in SERVICES
    assert origin.port == code_server["port"]
    # The same code location name as `etl dev` (root workspace.yaml) and `dg` (pyproject.toml).
    [local] = location_origins_from_yaml_paths([str(ROOT / "workspace.yaml")])
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert origin.location_name == local.location_name == pyproject["tool"]["dg"]["project"]["code_location_name"]


@pytest.mark.parametrize(
    "break_it",
    [
        lambda config: config["load_from"][0].update(grpc_sever=config["load_from"][0].pop("grpc_server")),
        lambda config: config["load_from"][0]["grpc_server"].update(prot=4000),
        lambda config: config["load_from"][0]["grpc_server"].update(port="four thousand"),
    ],
    ids=["misspelt-target", "unknown-key", "wrong-type"],
)
def test_a_broken_workspace_is_rejected(break_it):
    config = yaml.safe_load(GRPC_WORKSPACE.read_text())
    break_it(config)
    with pytest.raises(DagsterInvalidConfigError):
        ensure_workspace_config(config, str(GRPC_WORKSPACE))


# --- instance configs: the root dagster.yaml and the Kubernetes one -------------------------------


def validate_instance(path: Path) -> Mapping[str, Any]:
    """What Dagster does when it loads an instance, short of connecting: the schema, then each class's own."""
    config, custom_class = dagster_instance_config(str(path.parent), path.name)
    assert custom_class is None
    for key, section in yaml.safe_load(path.read_text()).items():
        if isinstance(section, Mapping) and {"module", "class"} <= set(section):
            # Resolved as the instance resolves it (ConfigurableClassData maps `dagster.core` to `dagster._core`).
            pointer = ConfigurableClassData(section["module"], section["class"], "{}")
            configurable = class_from_code_pointer(pointer.module_name, pointer.class_name)
            result = validate_config(configurable.config_type(), section.get("config") or {})
            if not result.success:
                raise DagsterInvalidConfigError(f"{path.name}: {key}", result.errors, section.get("config"))
    return config


@pytest.mark.parametrize("path", [ROOT_INSTANCE, K8S_INSTANCE], ids=["root", "kubernetes"])
def test_instance_config_validates(path):
    config = validate_instance(path)
    assert config["telemetry"] == {"enabled": False}
    assert config["freshness"] == {"enabled": True}
    assert config["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}
    assert config["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"


def test_kubernetes_instance_mirrors_the_root_one():
    root, k8s = yaml.safe_load(ROOT_INSTANCE.read_text()), yaml.safe_load(K8S_INSTANCE.read_text())
    for key in ("storage", "run_coordinator", "concurrency", "run_retries", "freshness", "telemetry"):
        assert k8s[key] == root[key], key


def test_kubernetes_instance_reads_only_settings_from_the_environment():
    names = re.findall(r"^\s*env:\s*(\S+)\s*$", K8S_INSTANCE.read_text(), flags=re.MULTILINE)
    assert "DAGSTER_PG_URL" in names
    assert set(names) <= SETTINGS_NAMES


def test_the_run_launcher_is_dagster_k8s_and_its_config_validates():
    from dagster_k8s import K8sRunLauncher

    section = yaml.safe_load(K8S_INSTANCE.read_text())["run_launcher"]
    pointer = ConfigurableClassData(section["module"], section["class"], "{}")
    launcher_class = class_from_code_pointer(pointer.module_name, pointer.class_name)
    assert launcher_class is K8sRunLauncher
    result = validate_config(launcher_class.config_type(), section["config"])
    assert result.success, [error.message for error in result.errors]
    config = result.value
    assert config["dagster_home"] == IMAGE_DAGSTER_HOME
    assert config["env_secrets"] and config["env_config_maps"]
    assert "job_image" not in section["config"]  # runs use the code location's image


def test_dagster_k8s_is_a_dev_dependency_of_dagster_s_release():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert not any(requirement.startswith("dagster-k8s") for requirement in pyproject["project"]["dependencies"])
    assert any(requirement.startswith("dagster-k8s") for requirement in pyproject["dependency-groups"]["dev"])
    # Dagster 1.X.Y ships its libraries as 0.(X+16).Y: a mismatched pair breaks at import or at run.
    major, minor, patch = importlib.metadata.version("dagster").split(".")
    assert major == "1"
    assert importlib.metadata.version("dagster-k8s") == f"0.{int(minor) + 16}.{patch}"


def _broken_instances() -> list[tuple[str, str, str]]:
    return [
        ("misspelt-section", "run_retries:", "run_retry:"),
        ("misspelt-key", "max_retries: 2", "max_retry: 2"),
        ("wrong-type", "max_concurrent_runs: 4", "max_concurrent_runs: four"),
        ("misspelt-launcher-key", "service_account_name:", "service_acount_name:"),
        ("missing-launcher-key", "    instance_config_map: etl-dagster-instance\n", ""),
        ("misspelt-log-manager-key", "upload_interval:", "upload_intervall:"),
    ]


@pytest.mark.parametrize(("change", "old", "new"), _broken_instances(), ids=[case[0] for case in _broken_instances()])
def test_a_broken_kubernetes_instance_is_rejected(tmp_path, change, old, new):
    text = K8S_INSTANCE.read_text()
    assert old in text, change
    broken = tmp_path / "dagster.yaml"
    broken.write_text(text.replace(old, new, 1))
    with pytest.raises(DagsterInvalidConfigError):
        validate_instance(broken)


# --- the Kubernetes Job of a run, as dagster-k8s builds it ----------------------------------------

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: test, user: {token: not-used}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
"""


def run_job_manifest(tmp_path: Path, launcher_config: Mapping[str, Any]) -> dict[str, Any]:
    """The Job the K8sRunLauncher would create for a run (no cluster is contacted)."""
    from dagster import DagsterRun
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import construct_dagster_k8s_job

    processed = process_config(K8sRunLauncher.config_type(), dict(launcher_config))
    assert processed.success, [error.message for error in processed.errors]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    # Outside a cluster: a kubeconfig instead of the in-cluster service account; nothing else changes.
    launcher = K8sRunLauncher.from_config_value(
        None, {**processed.value, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    )
    run = DagsterRun(job_name="daily_events_job", run_id="0f0e0d0c-0b0a-0908-0706-050403020100")
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)
    job = construct_dagster_k8s_job(
        context.get_k8s_job_config(job_image="registry.example.com/etl-assets:0123abc", run_launcher=launcher),
        args=["dagster", "api", "execute_run", "{}"],
        job_name="dagster-run-0f0e0d0c",
        user_defined_k8s_config=context.run_k8s_config,
        component="run_worker",
    )
    manifest = kubernetes.client.ApiClient().sanitize_for_serialization(job)
    manifest["metadata"]["namespace"] = context.namespace
    return manifest


def test_a_run_becomes_a_job_with_the_platform_environment(tmp_path):
    config = yaml.safe_load(K8S_INSTANCE.read_text())["run_launcher"]["config"]
    job = run_job_manifest(tmp_path, config)
    assert job["metadata"]["namespace"] == config["job_namespace"]
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == config["service_account_name"]
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0  # Dagster retries, not the Job
    [container] = pod["containers"]
    assert container["image"] == "registry.example.com/etl-assets:0123abc"
    assert container["imagePullPolicy"] == config["image_pull_policy"]
    assert {"name": "DAGSTER_HOME", "value": IMAGE_DAGSTER_HOME} in container["env"]
    env_from = container["envFrom"]
    assert [source["secretRef"]["name"] for source in env_from if "secretRef" in source] == config["env_secrets"]
    assert [source["configMapRef"]["name"] for source in env_from if "configMapRef" in source] == config[
        "env_config_maps"
    ]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "runAsNonRoot": True}
    assert container["resources"]["limits"]["memory"] == config["resources"]["limits"]["memory"]
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "run_worker"
    # Secrets reach the pod by reference only.
    assert all(set(variable) == {"name", "value"} for variable in container["env"])
    assert not any(SECRET_NAME.search(variable["name"]) for variable in container["env"])


def test_raw_kubernetes_config_with_a_misspelt_field_is_rejected(tmp_path):
    config = copy.deepcopy(yaml.safe_load(K8S_INSTANCE.read_text())["run_launcher"]["config"])
    config["run_k8s_config"]["container_config"]["securty_context"] = config["run_k8s_config"]["container_config"].pop(
        "security_context"
    )
    with pytest.raises(Exception, match=r"Unexpected keys .*securty_context"):
        run_job_manifest(tmp_path, config)
