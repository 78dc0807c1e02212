"""Turn the environment descriptions in deployments/environments/*.yaml into Prefect blocks.

    python -m deployments.register            # every environment described in the folder
    python -m deployments.register local      # just one

Block documents per environment NAME: NAME (Flowmasters Environment) and its target's blocks:
Docker host: NAME-docker-host (target), NAME-docker (DockerHost), NAME-database (Postgres
connection, password as a secret); AWS: NAME-aws-target, NAME-aws (AwsCredentials, keys as
secrets).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect.client.orchestration import get_client
from prefect_aws import AwsCredentials
from prefect_docker import DockerHost, DockerRegistryCredentials

from blocks.aws import AwsTarget
from blocks.database import PostgresConnection
from blocks.environment import FlowmastersEnvironment
from blocks.targets import DockerHostTarget
from flows.lock import lock_name
from targets.errors import ReleaseError

HERE = Path(__file__).resolve().parent / "environments"
DEFAULTS = {
    "FM_STACK_DIR": "/var/lib/flowmasters",
    "FM_REGISTRY_PORT": "5000",
    "FM_POSTGRES_PORT": "5433",
    "FM_BASE_IMAGE": "flowmasters/base:bookworm",
    "FM_AWS_REGION": "eu-west-1",
    "FM_AWS_ENDPOINT_URL": "",  # empty: AWS itself; scripts/stack.sh sets its moto stand-in
    # A stack change can take CloudFormation half an hour; scripts/stack.sh lowers this for its
    # stand-in, which cannot create the whole stack and would otherwise keep a run waiting.
    "FM_AWS_INFRASTRUCTURE_TIMEOUT": "3600",
}
BLOCK_TYPES = (
    DockerHost,
    DockerRegistryCredentials,
    PostgresConnection,
    DockerHostTarget,
    AwsCredentials,
    AwsTarget,
    FlowmastersEnvironment,
)


def expand(value: Any) -> Any:
    """Replace ${VAR} in every string; an unset variable without a default is an error."""
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v) for v in value]
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in os.environ:
            return os.environ[name]
        if name in DEFAULTS:
            return DEFAULTS[name]
        raise ReleaseError(f"${{{name}}} is used in an environment description but is not set")

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)\}", lookup, value)


def load_description(name: str) -> dict[str, Any]:
    path = HERE / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in HERE.glob("*.yaml")))
        raise ReleaseError(f"no description of environment '{name}' at {path} (known: {known})")
    return expand(yaml.safe_load(path.read_text()))


def read_secret(spec: dict[str, Any], what: str) -> str:
    """A secret from `password_file` or the variable named by `password_env`; never from YAML."""
    if "password_file" in spec:
        path = Path(spec["password_file"])
        if not path.is_file():
            raise ReleaseError(f"{what}: {path} does not exist; `scripts/stack.sh up` creates it")
        value = path.read_text().strip()
        if not value:
            raise ReleaseError(
                f"{what}: {path} is empty; `scripts/stack.sh up` writes the password"
            )
        return value
    if "password_env" in spec:
        value = os.environ.get(spec["password_env"])
        if not value:
            raise ReleaseError(f"{what}: set the environment variable {spec['password_env']}")
        return value
    raise ReleaseError(f"{what}: give password_file or password_env (never the password itself)")


def register_environment(name: str, description: dict[str, Any]) -> FlowmastersEnvironment:
    """Create or update the blocks of one environment; returns the environment block."""
    target = description["target"]
    builders = {"docker-host": _docker_host_target, "aws": _aws_target}
    if target.get("type") not in builders:
        raise ReleaseError(
            f"environment '{name}': unknown target type {target.get('type')!r} "
            f"(use one of: {', '.join(builders)})"
        )
    target_block = builders[target["type"]](name, target)
    environment = FlowmastersEnvironment(
        target=target_block,
        services=description["services"],
        checks=description.get("checks", {}),
        build_args=description.get("build_args", {}),
    )
    environment.spec(name)  # validates the whole description before it is saved
    environment.save(name, overwrite=True)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(lock_name(name), limit=1)
    return environment


def _docker_host_target(name: str, target: dict[str, Any]) -> DockerHostTarget:
    db = target["database"]
    database = PostgresConnection(
        host=db.get("host", "127.0.0.1"),
        port=int(db["port"]),
        database=db["database"],
        username=db["username"],
        password=read_secret(db, f"environment '{name}' database"),
    )
    database.save(f"{name}-database", overwrite=True)
    # Builds stream output slowly; a long silent RUN step must not hit a 60 s read timeout.
    docker_host = DockerHost(base_url=target["docker_host"], timeout=900)
    docker_host.save(f"{name}-docker", overwrite=True)
    proxy_dir = Path(target["proxy_dir"])
    host_target = DockerHostTarget(
        docker_host=docker_host,
        registry=target["registry"],
        database=database,
        proxy_admin_socket=str(proxy_dir / "admin.sock"),
        proxy_config_dir=str(proxy_dir / "conf.d"),
        proxy_pidfile=str(proxy_dir.parent / "pids" / "haproxy.pid"),
        backup_dir=target["backup_dir"],
        port_base=int(target["port_base"]),
    )
    host_target.save(f"{name}-docker-host", overwrite=True)
    return host_target


def _aws_credentials(name: str, spec: dict[str, Any]) -> AwsCredentials:
    """Keys come from environment variables named in the description (never the YAML itself);
    without them, boto3's own chain (profile, instance role) applies."""
    keys: dict[str, Any] = {}
    if "access_key_id_env" in spec:
        keys["aws_access_key_id"] = read_secret(
            {"password_env": spec["access_key_id_env"]}, f"environment '{name}' AWS key id"
        )
        keys["aws_secret_access_key"] = read_secret(
            {"password_env": spec["secret_access_key_env"]}, f"environment '{name}' AWS secret"
        )
    client_parameters = {"endpoint_url": spec["endpoint_url"]} if spec.get("endpoint_url") else {}
    return AwsCredentials(
        region_name=spec["region"],
        profile_name=spec.get("profile"),
        assume_role_arn=spec.get("assume_role_arn"),
        aws_client_parameters=client_parameters,
        **keys,
    )


def _aws_target(name: str, target: dict[str, Any]) -> AwsTarget:
    credentials = _aws_credentials(name, target["credentials"])
    credentials.save(f"{name}-aws", overwrite=True)
    fields = {
        key: target[key]
        for key in (
            "stack_name",
            "template_path",
            "stack_parameters",
            "bootstrap_parameters",
            "cloudformation_role_arn",
            "image_parameters",
            "desired_count_parameter",
            "cluster",
            "services",
            "repositories",
            "db_instance_identifier",
            "distribution_id",
            "target_groups",
            "subnets",
            "security_groups",
            "invalidation_paths",
            "scale_from_zero",
            "deploy_timeout_seconds",
            "infrastructure_timeout_seconds",
        )
        if key in target
    }
    docker_host = DockerHost(base_url=target.get("docker_host"), timeout=900)
    aws_target = AwsTarget(aws_credentials=credentials, docker_host=docker_host, **fields)
    aws_target.save(f"{name}-aws-target", overwrite=True)
    return aws_target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="environments (default: all described)")
    args = parser.parse_args(argv)
    for block_type in BLOCK_TYPES:
        block_type.register_type_and_schema()
    names = args.names or sorted(p.stem for p in HERE.glob("*.yaml"))
    try:
        for name in names:
            register_environment(name, load_description(name))
            print(f"registered environment '{name}'")
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
