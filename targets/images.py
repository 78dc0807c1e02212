"""Images, the same on every target: built by a Docker engine, pushed once, a tag never overwritten.

Both targets build with an engine (docker-py, classic builder): the Docker host with its own, AWS
with the engine that pushes to ECR. Only the registry differs (the distribution API, ECR), so a
target hands `push_once` how to read what a tag holds and how to push; the rule is kept here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import docker
import docker.errors
import requests
from prefect_docker import DockerHost

from domain.errors import ReleaseError, TransientError
from domain.results import BuildSpec, BuiltImage, PushedImage

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)


class TaggedImage(NamedTuple):
    """What a registry holds under a tag."""

    digest: str  # the manifest's digest: what `repository@digest` names
    config_digest: str  # equals the local image id of the image that was pushed


def engine_error(host: DockerHost, exc: Exception, hint: str) -> TransientError:
    """An engine that does not answer may be restarting: transient, named, with what to do."""
    return TransientError(f"Docker engine at {host.base_url} is unreachable ({exc}); {hint}")


@contextmanager
def engine(host: DockerHost, hint: str) -> Iterator[docker.DockerClient]:
    """A client of the engine that `host` names (`hint`: what to do when it does not answer).
    An engine's server error (5xx) or a dropped connection while it is used is transient (the
    engine restarting, a daemon busy): the step's retries take it."""
    try:
        client = host.get_client()
    except docker.errors.DockerException as exc:
        raise engine_error(host, exc, hint) from exc
    with client:
        try:
            yield client
        except docker.errors.APIError as exc:
            if not exc.is_server_error():
                raise  # 4xx: the request was wrong (a conflict, a missing image), not the engine
            raise TransientError(f"Docker engine at {host.base_url}: {exc}") from exc
        except requests.exceptions.ConnectionError as exc:
            raise engine_error(host, exc, hint) from exc


def build(client: docker.DockerClient, spec: BuildSpec, local_ref: str) -> BuiltImage:
    context = Path(spec.context_dir)
    dockerfile = context / spec.dockerfile
    if not dockerfile.is_file():
        raise ReleaseError(
            f"service {spec.service}: no Dockerfile at {dockerfile}; add it or set `dockerfile` "
            "for the service in the environment's description"
        )
    try:
        image, _ = client.images.build(
            path=str(context),
            dockerfile=spec.dockerfile,
            tag=local_ref,
            target=spec.target,
            buildargs={**spec.build_args, spec.version_build_arg: spec.version},
            labels={
                "flowmasters.service": spec.service,
                "flowmasters.version": spec.version,
                "flowmasters.context-digest": spec.context_digest,
            },
            pull=False,
            rm=True,
            forcerm=True,
            network_mode="host",
        )
    except docker.errors.BuildError as exc:
        log = "".join(chunk.get("stream", "") for chunk in exc.build_log)[-2000:]
        raise ReleaseError(f"building {spec.service} failed: {exc.msg}\n{log}") from exc
    except docker.errors.APIError as exc:
        if exc.status_code and exc.status_code < 500:
            raise ReleaseError(f"building {spec.service} failed: {exc.explanation}") from exc
        raise TransientError(f"Docker engine error building {spec.service}: {exc}") from exc
    return BuiltImage(
        service=spec.service, image_id=image.id, local_ref=local_ref, version=spec.version
    )


def refuse_overwrite(reference: str, held: TaggedImage, image_id: str) -> None:
    """A tag is never overwritten: one that holds another image is refused with what to do."""
    if held.config_digest != image_id:
        found = (held.config_digest or "an image without a config digest")[:19]
        raise ReleaseError(
            f"{reference} already exists and holds a different image ({found} instead of "
            f"{image_id[:19]}); tags are never overwritten: release under a new version"
        )


def push_once(
    image: BuiltImage,
    repository: str,
    held: Callable[[], TaggedImage | None],
    push: Callable[[], None],
) -> PushedImage:
    """`image` as `repository:<version>`: pushed unless the registry holds it there already."""
    reference = f"{repository}:{image.version}"
    existing = held()
    if existing is not None:
        refuse_overwrite(reference, existing, image.image_id)
        return _pushed(image, repository, existing.digest, pushed=False)
    push()
    after = held()
    if after is None or after.config_digest != image.image_id:
        raise TransientError(f"{reference} is not in the registry after the push")
    return _pushed(image, repository, after.digest, pushed=True)


def push_through(
    client: docker.DockerClient,
    image_id: str,
    repository: str,
    tag: str,
    auth: dict[str, str] | None,
) -> None:
    """Tag the built image as `repository:tag` and push it with the engine. `auth` may hold a
    registry password: it goes to the engine, never to a log."""
    client.images.get(image_id).tag(repository, tag)
    for line in client.images.push(repository, tag, stream=True, decode=True, auth_config=auth):
        if "error" in line:
            raise TransientError(f"pushing {repository}:{tag} failed: {line['error']}")


def _pushed(image: BuiltImage, repository: str, digest: str, pushed: bool) -> PushedImage:
    return PushedImage(
        service=image.service,
        repository=repository,
        tag=image.version,
        digest=digest,
        image_id=image.image_id,
        pushed=pushed,
    )
