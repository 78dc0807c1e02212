"""The rule both targets push by: a tag is pushed once and never overwritten."""

from __future__ import annotations

import docker.errors
import pytest
import requests
from prefect_docker import DockerHost

from domain.errors import ReleaseError, TransientError
from domain.results import BuiltImage, PushedImage
from targets.images import TaggedImage, engine, push_once

IMAGE = BuiltImage(service="backend", image_id="sha256:" + "a" * 64, local_ref="x", version="v2")
REPOSITORY = "127.0.0.1:5000/flowmasters/backend"


class Registry:
    """Plays a registry: what the tag holds before and after a push; counts the pushes."""

    def __init__(self, before: TaggedImage | None, after: TaggedImage | None) -> None:
        self.held, self.after, self.pushes = before, after, 0

    def lookup(self) -> TaggedImage | None:
        return self.held

    def push(self) -> None:
        self.pushes += 1
        self.held = self.after


def test_a_new_tag_is_pushed_and_its_digest_read_back():
    registry = Registry(None, TaggedImage("sha256:manifest", IMAGE.image_id))

    pushed = push_once(IMAGE, REPOSITORY, registry.lookup, registry.push)

    assert registry.pushes == 1
    assert pushed == PushedImage(
        service="backend",
        repository=REPOSITORY,
        tag="v2",
        digest="sha256:manifest",
        image_id=IMAGE.image_id,
        pushed=True,
    )


def test_a_tag_that_holds_this_image_is_not_pushed_again():
    registry = Registry(TaggedImage("sha256:manifest", IMAGE.image_id), None)

    pushed = push_once(IMAGE, REPOSITORY, registry.lookup, registry.push)

    assert registry.pushes == 0
    assert (pushed.pushed, pushed.digest) == (False, "sha256:manifest")


def test_a_tag_that_holds_another_image_is_refused_and_nothing_is_pushed():
    registry = Registry(TaggedImage("sha256:manifest", "sha256:" + "b" * 64), None)

    with pytest.raises(ReleaseError) as error:
        push_once(IMAGE, REPOSITORY, registry.lookup, registry.push)

    assert registry.pushes == 0
    assert str(error.value) == (
        f"{REPOSITORY}:v2 already exists and holds a different image (sha256:bbbbbbbbbbbb "
        "instead of sha256:aaaaaaaaaaaa); tags are never overwritten: release under a new version"
    )


@pytest.mark.parametrize("after", [None, TaggedImage("sha256:m", "sha256:" + "c" * 64)])
def test_a_push_the_registry_does_not_show_is_transient(after):
    registry = Registry(None, after)

    with pytest.raises(TransientError, match=r"flowmasters/backend:v2 is not in the registry"):
        push_once(IMAGE, REPOSITORY, registry.lookup, registry.push)


class TestEngineErrors:
    """What leaves `engine()`: an engine's server error is transient (the step retries it), a
    client error is the request's fault and stays as it is. No engine is contacted: the client
    is made for an address nobody listens on and never used."""

    HOST = DockerHost(base_url="tcp://127.0.0.1:9", version="1.41")

    @staticmethod
    def api_error(status: int) -> docker.errors.APIError:
        response = requests.Response()
        response.status_code = status
        response.reason = "Service Unavailable" if status == 503 else "Conflict"
        return docker.errors.APIError("create failed", response=response)

    def test_a_server_error_is_transient(self):
        wanted = r"Docker engine at tcp://127.0.0.1:9: 503"
        with pytest.raises(TransientError, match=wanted), engine(self.HOST, "start it"):
            raise self.api_error(503)

    def test_a_client_error_is_not(self):
        with pytest.raises(docker.errors.APIError), engine(self.HOST, "start it"):
            raise self.api_error(409)

    def test_a_dropped_connection_is_transient_and_says_what_to_do(self):
        wanted = r"is unreachable .*; start it"
        with pytest.raises(TransientError, match=wanted), engine(self.HOST, "start it"):
            raise requests.exceptions.ConnectionError("connection reset")
