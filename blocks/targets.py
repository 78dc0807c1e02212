"""Target blocks: where an environment runs, with the connection blocks it needs.

A target block owns its clients: `connect()` returns the runtime that the tasks call. Only the
runtime imports docker or boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect.blocks.core import Block
from prefect_docker import DockerHost, DockerRegistryCredentials
from pydantic import Field

from blocks.database import PostgresConnection

if TYPE_CHECKING:
    from targets.base import EnvironmentSpec, Target


class DockerHostTarget(Block):
    """A single Docker host: engine, registry, PostgreSQL and an HAProxy load balancer.

    Each service gets two slots (ports `port_base + 2*i` and `+1`, `i` its position by deploy
    order); a release starts the new version on the idle slot and HAProxy's runtime API moves
    traffic to it.

    Example:
        ```python
        from blocks.targets import DockerHostTarget
        target = DockerHostTarget.load("local-docker")
        ```
    """

    _block_type_name = "Flowmasters Docker Host Target"
    _description = "A single Docker host with a registry, PostgreSQL and HAProxy, all on loopback."

    docker_host: DockerHost = Field(description="The Docker engine that builds and runs images.")
    registry: str = Field(default="127.0.0.1:5000", description="Registry host:port for images.")
    registry_credentials: DockerRegistryCredentials | None = Field(
        default=None, description="Login for the registry, if it requires one."
    )
    database: PostgresConnection = Field(description="The environment's application database.")
    proxy_admin_socket: str = Field(description="HAProxy runtime API (admin) socket path.")
    proxy_config_dir: str = Field(description="HAProxy conf.d folder for this environment's file.")
    proxy_pidfile: str = Field(description="HAProxy master PID file, to reload on a new config.")
    backup_dir: str = Field(description="Folder for the pre-migration database dumps.")
    port_base: int = Field(ge=1024, le=65000, description="First of the service slot ports.")
    keep_revisions: int = Field(default=3, ge=2, description="Stopped containers kept per service.")

    def connect(self, environment: EnvironmentSpec) -> Target:
        """The runtime the tasks call for this environment."""
        from targets.docker_host.target import DockerHostRuntime

        return DockerHostRuntime(self, environment)
