"""The Docker host's blocks: the target (engine, registry, HAProxy, backups) and its database.

A block owns its clients' settings; `DockerHostRuntime` (runtime.py) is what the tasks call.
"""

from __future__ import annotations

from urllib.parse import quote

from prefect.blocks.core import Block
from prefect_docker import DockerHost, DockerRegistryCredentials
from pydantic import Field, SecretStr

from targets.docker_host.cdn import VarnishAdmin


class PostgresConnection(Block):
    """Connection to the application's PostgreSQL database.

    Example:
        ```python
        from targets.docker_host.blocks import PostgresConnection
        db = PostgresConnection.load("local-database")
        ```
    """

    _block_type_name = "Flowmasters Postgres Connection"
    _description = "Connection to the Flow Masters application database; the password is a secret."

    host: str = Field(default="127.0.0.1", description="Database host.")
    port: int = Field(default=5432, description="Database port.")
    database: str = Field(description="Database name.")
    username: str = Field(description="Role the application and the migrations log in as.")
    password: SecretStr = Field(description="Password of that role.")

    def libpq_env(self) -> dict[str, str]:
        """The PG* variables for psql, pg_dump and the app; the only place the secret is unwrapped."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGDATABASE": self.database,
            "PGUSER": self.username,
            "PGPASSWORD": self.password.get_secret_value(),
            "PGCONNECT_TIMEOUT": "5",
        }

    def database_url(self) -> str:
        """DATABASE_URL for apps that take a URL (Payload); unwrapped only at the call."""
        user = quote(self.username, safe="")
        secret = quote(self.password.get_secret_value(), safe="")
        return f"postgres://{user}:{secret}@{self.host}:{self.port}/{quote(self.database, safe='')}"

    def app_env(self) -> dict[str, str]:
        """What a service that uses the database gets: libpq's PG* variables and DATABASE_URL."""
        return {**self.libpq_env(), "DATABASE_URL": self.database_url()}

    def describe(self) -> str:
        """Where the database is, without the secret (for messages and reports)."""
        return f"postgresql://{self.username}@{self.host}:{self.port}/{self.database}"


class VarnishCdn(Block):
    """The host's CDN (Varnish, shared by the host's environments): its admin port and secret.

    Example:
        ```python
        from targets.docker_host.blocks import VarnishCdn
        cdn = VarnishCdn.load("local-cdn")
        ```
    """

    _block_type_name = "Flowmasters Varnish CDN"
    _description = "The Docker host's CDN: Varnish's admin (CLI) port and its secret."

    admin: str = Field(
        default="127.0.0.1:6082", description="Varnish's admin port (-T), host:port."
    )
    secret: SecretStr = Field(description="The contents of Varnish's secret file (-S).")

    def client(self) -> VarnishAdmin:
        """The admin client; the secret is unwrapped here, at the call."""
        return VarnishAdmin(self.admin, self.secret.get_secret_value())


class DockerHostTarget(Block):
    """A single Docker host: engine, registry, PostgreSQL and an HAProxy load balancer.

    Each service gets two slots (ports `port_base + 2*i` and `+1`, `i` its position by deploy
    order); a release starts the new version on the idle slot and HAProxy's runtime API moves
    traffic to it.

    Example:
        ```python
        from targets.docker_host.blocks import DockerHostTarget
        target = DockerHostTarget.load("local-docker-host")
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
    cdn: VarnishCdn | None = Field(
        default=None,
        description="The host's CDN in front of the public URLs; none: HAProxy serves them alone.",
    )
    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus scraping the host's HAProxy: the bake and canary steps read "
        "each version's traffic there; none: they decide by their probes alone, and say so.",
    )
