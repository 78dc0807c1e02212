"""Wrong AWS credentials, against a moto server that checks them: moto's own server, started
here on a loopback port with INITIAL_NO_AUTH_ACTION_COUNT=0, so every request is authenticated
against moto's IAM and unknown keys are answered as AWS answers them (InvalidClientTokenId).

A release of an AWS environment whose credentials block holds such keys must stop at its first
step with a message that names the credentials and how to replace them, and change nothing: no
stack, repository or image made, no record written, the secret nowhere in the message.

Expired keys: moto does not expire session tokens, so AWS's ExpiredToken answer is covered by
the translation's unit test (tests/unit/targets/aws/test_clients.py), not here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from prefect.variables import Variable

from deployments.register import load_description, register_environment
from flows.release import release
from tasks.records import variable_name
from testbed.scratch import free_port_block, image_tags, remove_blocks
from tests.support.matrix import MATRIX, Row

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KEY_ENV, SECRET_ENV = "FM_TEST_WRONG_AWS_KEY_ID", "FM_TEST_WRONG_AWS_SECRET"


@pytest.fixture(scope="module")
def checking_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's server with IAM authentication on; ended by its PID."""
    port = free_port_block(1)
    log = tmp_path_factory.mktemp("moto-auth") / "moto.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/moto-api/data.json", timeout=2).is_success:
                    break
            assert time.monotonic() < deadline, f"moto did not start: {log.read_text()[-2000:]}"
            assert server.poll() is None, f"moto exited: {log.read_text()[-2000:]}"
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(30)


@pytest.fixture
def wrong_keys(checking_moto: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """An AWS environment like `staging`, its credentials block holding keys moto never issued."""
    name = f"it-awskeys-{uuid.uuid4().hex[:6]}"
    secret = f"fm-canary-{secrets.token_hex(12)}"
    monkeypatch.setenv(KEY_ENV, "AKIA" + secrets.token_hex(8).upper())
    monkeypatch.setenv(SECRET_ENV, secret)
    description = load_description("staging")
    credentials = description["target"]["credentials"]
    credentials["endpoint_url"] = checking_moto
    credentials["access_key_id_env"], credentials["secret_access_key_env"] = KEY_ENV, SECRET_ENV
    description["target"]["stack_name"] = name
    for service in description["services"]:
        service["repository"] = f"{name}/{service['name']}"
    register_environment(name, description)
    try:
        yield name, secret
    finally:
        remove_blocks(name)
        Variable.unset(variable_name(name))


def images_of(name: str) -> list[str]:
    engine = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    try:
        return image_tags(engine, name)
    finally:
        engine.close()


def test_wrong_aws_credentials_are_refused_before_anything_changes(checking_moto, wrong_keys):
    name, secret = wrong_keys
    started = time.monotonic()
    state = release(name, "v1", str(REPO / "examples" / "flowmasters"), return_state=True)
    took = time.monotonic() - started
    message = " ".join((state.message or "").split())
    moto_state = httpx.get(f"{checking_moto}/moto-api/data.json", timeout=10).text
    MATRIX.append(
        Row(
            fault="bad input",
            step="wrong AWS credentials (moto checking keys)",
            end_state="refused, unchanged" if not state.is_completed() else "RELEASED",
            rows_lost=None,
            recovered_s=None,
            note=f"{took:.1f} s; {message[:200]}",
        )
    )
    assert not state.is_completed()
    assert "AWS rejected the credentials (InvalidClientTokenId)" in message, message
    assert "AwsCredentials block `<environment>-aws`" in message, message
    assert secret not in message
    assert name not in moto_state, "a resource was made with wrong credentials"
    assert images_of(name) == [], "an image was built before the credentials were checked"
    assert Variable.get(variable_name(name), default=None) is None, "a record was written"
