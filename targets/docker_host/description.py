"""A `type: docker-host` section of an environment description, saved as the target's blocks.

Blocks per environment NAME: NAME-docker-host (the target), NAME-docker (DockerHost) and
NAME-database (the Postgres connection, its password a secret read from `password_file` or
`password_env`, never from the YAML), and with a `cdn:` entry NAME-cdn (the host's Varnish: its admin
port and the secret from its `password_file`). `metrics: {prometheus: URL}` names the
Prometheus that scrapes the host's HAProxy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect_docker import DockerHost

from targets.docker_host.blocks import DockerHostTarget, PostgresConnection, VarnishCdn
from targets.secrets import read_secret


def register(name: str, target: dict[str, Any]) -> DockerHostTarget:
    """Create or update the target's blocks; returns the target block."""
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
    cdn = None
    if "cdn" in target:
        cdn = VarnishCdn(
            admin=target["cdn"].get("admin", "127.0.0.1:6082"),
            secret=read_secret(target["cdn"], f"environment '{name}' CDN"),
        )
        cdn.save(f"{name}-cdn", overwrite=True)
    host_target = DockerHostTarget(
        docker_host=docker_host,
        registry=target["registry"],
        database=database,
        # HAProxy's runtime API: proxy_dir/admin.sock, as scripts/stack.sh configures it, unless
        # the description names another (a packaged HAProxy's is often /run/haproxy/admin.sock).
        proxy_admin_socket=target.get("proxy_admin_socket", str(proxy_dir / "admin.sock")),
        proxy_config_dir=str(proxy_dir / "conf.d"),
        proxy_pidfile=str(proxy_dir.parent / "pids" / "haproxy.pid"),
        backup_dir=target["backup_dir"],
        port_base=int(target["port_base"]),
        cdn=cdn,
        prometheus_url=target.get("metrics", {}).get("prometheus"),
    )
    host_target.save(f"{name}-docker-host", overwrite=True)
    return host_target
