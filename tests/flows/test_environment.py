"""blocks/environment.py: what a run reads of its environment block, and what that costs it.

The block is a real `Flowmasters Environment` in the package's throwaway server (conftest.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prefect.settings import PREFECT_API_URL

from blocks.environment import Environment, load_environment
from blocks.environment_block import FlowmastersEnvironment
from tests.flows.conftest import ENVIRONMENT

ROOT = Path(__file__).resolve().parents[2]
AWS_SDKS = ("prefect_aws", "boto3", "botocore", "aiobotocore", "moto")


def test_a_run_holds_the_environment_its_block_describes(served):
    block = FlowmastersEnvironment.load(ENVIRONMENT)

    environment = load_environment(ENVIRONMENT)

    assert environment == Environment(spec=block.spec(ENVIRONMENT), target=block.target)
    password = environment.target.database.password
    assert password.get_secret_value() == "unused", "the secret is read, and stays SecretStr"
    assert (
        environment.target.database._block_document_name
        == block.target.database._block_document_name
    )


def test_a_docker_host_run_imports_no_aws_sdk(served):
    """A new process, as a deployment run is: every SDK it imports is start-up it pays."""
    program = (
        "import json, sys\n"
        "import flows.release, flows.rollback\n"
        "from blocks.environment import load_environment\n"
        f"runtime = load_environment({ENVIRONMENT!r}).connect()\n"
        "print(json.dumps([type(runtime).__name__, sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    runtime, modules = json.loads(done.stdout.strip().splitlines()[-1])

    assert runtime == "DockerHostRuntime"
    assert sorted(set(modules) & set(AWS_SDKS)) == []
