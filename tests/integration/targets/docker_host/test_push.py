"""The Docker host's push (targets/docker_host/push.py) against the stack's real registry and
engine, directly and through a fault proxy that answers 503 to half the requests."""

from __future__ import annotations

import contextlib
import io
import os
import re
import tarfile
import uuid
from collections import Counter
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from targets.docker_host import push as pushing
from tests.support.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

REGISTRY = f"127.0.0.1:{os.environ.get('FM_REGISTRY_PORT', '5000')}"
UPLOAD_DONE = re.compile(r"/blobs/uploads/[^?]+\?(?:.*&)?digest=(?P<digest>[^&]+)")


@pytest.fixture
def engine() -> Iterator[docker.DockerClient]:
    client = docker.DockerClient(base_url=os.environ["DOCKER_HOST"])
    yield client
    client.close()


@pytest.fixture
def image(engine) -> Iterator[str]:
    """A small image of two layers, made here (no image can be pulled), removed afterwards."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as archive:
        for name in ("a.txt", "b.txt"):
            content = f"{name} {uuid.uuid4()}\n".encode()
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    repository = f"fm-push-test-{uuid.uuid4().hex[:8]}"
    engine.api.import_image_from_data(data.getvalue(), repository=repository, tag="base")
    built, _ = engine.images.build(
        fileobj=io.BytesIO(f"FROM {repository}:base\nLABEL second=layer\n".encode()),
        tag=f"{repository}:two",
        rm=True,
    )
    base = engine.images.get(f"{repository}:base").id
    yield built.id
    for made in (built.id, base):  # the child first: an image with children cannot go
        with contextlib.suppress(docker.errors.ImageNotFound):
            engine.images.remove(made, force=True)


def test_a_pushed_image_pulls_back_as_the_same_image_and_a_second_push_sends_nothing(engine, image):
    repository = f"it-push/{uuid.uuid4().hex[:8]}"

    sent = pushing.push(engine, image, REGISTRY, repository, "v1")
    again = pushing.push(engine, image, REGISTRY, repository, "v2")

    assert image in sent  # the config, with every layer the registry did not have
    assert again == []
    engine.images.remove(image, force=True)
    pulled = engine.images.pull(f"{REGISTRY}/{repository}", tag="v1")
    assert pulled.id == image


def test_through_a_registry_failing_half_the_requests_each_blob_is_uploaded_once(engine, image):
    proxy = FaultProxy("127.0.0.1", int(REGISTRY.rsplit(":", 1)[1]), share_503=0.5, seed=5)
    proxy.start()
    try:
        sent = pushing.push(engine, image, proxy.address, f"it-push/{uuid.uuid4().hex[:8]}", "v1")
    finally:
        proxy.stop()

    completed = Counter(
        m["digest"]
        for e in proxy.log
        if e.method == "PUT" and e.status == 201 and (m := UPLOAD_DONE.search(e.path))
    )
    assert any(e.faulted for e in proxy.log), "the proxy failed no request: nothing was tested"
    assert sorted(completed) == sorted(sent)
    assert set(completed.values()) == {1}
