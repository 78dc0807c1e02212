"""`type: aws` environment descriptions become blocks whose secrets stay secret."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from blocks.environment import load_environment
from blocks.environment_block import FlowmastersEnvironment
from deployments.register import load_description, register_environment
from domain.errors import ReleaseError
from flows.lock import lock_name

SECRET = f"secret-{uuid.uuid4().hex}"


def aws_description() -> dict:
    description = load_description("sandbox")
    description["target"] = {
        "type": "aws",
        "credentials": {
            "region": "eu-west-1",
            "endpoint_url": "http://127.0.0.1:1",
            "access_key_id_env": "FM_TEST_AWS_KEY_ID",
            "secret_access_key_env": "FM_TEST_AWS_SECRET",
        },
        "stack_name": "flowmasters-test",
        "cluster": "flowmasters-test",
        "services": {"backend": "fm-backend", "frontend": "fm-frontend"},
        "repositories": {
            "backend": "flowmasters-test/backend",
            "frontend": "flowmasters-test/frontend",
        },
        "db_instance_identifier": "flowmasters-test-db",
        "target_groups": {"backend": "arn:tg/backend", "frontend": "arn:tg/frontend"},
        "subnets": ["subnet-1"],
        "security_groups": ["sg-1"],
    }
    return description


@pytest.fixture
def name(monkeypatch):
    monkeypatch.setenv("FM_TEST_AWS_KEY_ID", "AKIATESTKEY")
    monkeypatch.setenv("FM_TEST_AWS_SECRET", SECRET)
    env = f"it-aws-reg-{uuid.uuid4().hex[:6]}"
    yield env
    with get_client(sync_client=True) as client:
        for doc_name, slug in [
            (env, "flowmasters-environment"),
            (f"{env}-aws-target", "flowmasters-aws-target"),
            (f"{env}-aws", "aws-credentials"),
        ]:
            with contextlib.suppress(ObjectNotFound):
                client.delete_block_document(client.read_block_document_by_name(doc_name, slug).id)
        with contextlib.suppress(ObjectNotFound):
            client.delete_global_concurrency_limit_by_name(lock_name(env))


def test_aws_description_registers_an_aws_target(name):
    register_environment(name, aws_description())

    assert type(load_environment(name).connect()).__name__ == "AwsRuntime"
    block = FlowmastersEnvironment.load(name)
    creds = block.target.aws_credentials
    assert creds.aws_secret_access_key.get_secret_value() == SECRET
    assert creds.aws_client_parameters.endpoint_url == "http://127.0.0.1:1"
    with get_client(sync_client=True) as client:
        stored = client.read_block_document_by_name(
            f"{name}-aws", "aws-credentials", include_secrets=False
        )
    assert SECRET not in str(stored.data), "the API shows the secret only when asked for it"


def test_missing_key_variable_is_named(name, monkeypatch):
    monkeypatch.delenv("FM_TEST_AWS_SECRET")

    with pytest.raises(ReleaseError, match="FM_TEST_AWS_SECRET"):
        register_environment(name, aws_description())


def test_unknown_target_type_is_named(name):
    description = aws_description()
    description["target"]["type"] = "kubernetes"

    with pytest.raises(ReleaseError, match="unknown target type 'kubernetes'"):
        register_environment(name, description)
