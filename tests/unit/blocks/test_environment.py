"""blocks/environment.py: a block document that does not hold a valid environment is refused
with a message naming the fields, never their values (they hold passwords)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from prefect.client.schemas.objects import BlockDocument

from blocks.environment import ENVIRONMENT_BLOCK, environment_of
from blocks.environment_block import FlowmastersEnvironment
from domain.errors import ReleaseError
from targets import registry

CANARY = "canary-d0c5e1"


def document(target: dict[str, Any], services: list[dict[str, Any]] | None = None) -> BlockDocument:
    """An environment's document with its target inline (unsaved), as the server returns it."""
    return BlockDocument(
        name="broken",
        data={
            "services": services or [service("backend")],
            "target": target,
        },
        block_schema_id=uuid4(),
        block_type_id=uuid4(),
    )


def service(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "context": name,
        "repository": f"flowmasters/{name}",
        "order": 1,
        "public_url": "http://127.0.0.1:8090",
    }


def docker_host_target(**changes: Any) -> dict[str, Any]:
    target = {
        "block_type_slug": "flowmasters-docker-host-target",
        "docker_host": {"base_url": "unix:///nonexistent/docker.sock"},
        "database": {
            "host": "127.0.0.1",
            "port": 5433,
            "database": "app",
            "username": "app",
            "password": CANARY,
        },
        "proxy_admin_socket": "/nonexistent/admin.sock",
        "proxy_config_dir": "/nonexistent/conf.d",
        "proxy_pidfile": "/nonexistent/haproxy.pid",
        "backup_dir": "/nonexistent/backups",
        "port_base": 20000,
    }
    return {**target, **changes}


def test_a_valid_document_is_an_environment():
    environment = environment_of("broken", document(docker_host_target()))

    assert environment.target.port_base == 20000
    assert environment.target.database.password.get_secret_value() == CANARY


def test_an_invalid_target_is_named_without_its_values():
    with pytest.raises(ReleaseError) as refused:
        environment_of("broken", document(docker_host_target(port_base=1, database={})))

    message = str(refused.value)
    assert "environment 'broken'" in message and "port_base" in message
    assert "database.password" in message
    assert "python -m deployments.register broken" in message
    assert CANARY not in message and "20000" not in message


def test_an_invalid_description_is_named():
    twice = [service("backend"), service("backend")]
    with pytest.raises(ReleaseError, match=r"services: .*service names must be unique"):
        environment_of("broken", document(docker_host_target(), services=twice))


def test_the_slugs_read_from_documents_are_the_block_classes_own():
    assert FlowmastersEnvironment.get_block_type_slug() == ENVIRONMENT_BLOCK
    for kind in registry.KINDS:
        assert kind.slug == kind.block.get_block_type_slug(), kind.type
