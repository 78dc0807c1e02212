"""Build and push with the Docker engine (docker-py, classic builder)."""

from __future__ import annotations

from pathlib import Path

import docker
import docker.errors

from targets.base import BuildSpec, BuiltImage, PushedImage
from targets.docker_host.registry import RegistryClient
from targets.errors import ReleaseError, TransientError


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
            buildargs={**spec.build_args, "APP_VERSION": spec.version},
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


def push(
    client: docker.DockerClient,
    registry: RegistryClient,
    image: BuiltImage,
    repository: str,
    auth: dict[str, str] | None,
) -> PushedImage:
    """Push `image` as `repository:version`, refusing to replace a different image under that tag."""
    tag = image.version
    existing = registry.manifest(repository, tag)
    full_repo = f"{registry.registry}/{repository}"
    if existing is not None:
        if existing.config_digest != image.image_id:
            raise ReleaseError(
                f"{full_repo}:{tag} already exists and holds a different image "
                f"({existing.config_digest[:19]} instead of {image.image_id[:19]}); tags are never "
                "overwritten: release under a new version"
            )
        return _pushed(image, full_repo, tag, existing.digest, pushed=False)
    for line in client.images.push(full_repo, tag, stream=True, decode=True, auth_config=auth):
        if "error" in line:
            raise TransientError(f"pushing {full_repo}:{tag} failed: {line['error']}")
    pushed = registry.manifest(repository, tag)
    if pushed is None or pushed.config_digest != image.image_id:
        raise TransientError(f"{full_repo}:{tag} is not in the registry after the push")
    return _pushed(image, full_repo, tag, pushed.digest, pushed=True)


def _pushed(image: BuiltImage, repo: str, tag: str, digest: str, pushed: bool) -> PushedImage:
    return PushedImage(
        service=image.service,
        repository=repo,
        tag=tag,
        digest=digest,
        image_id=image.image_id,
        pushed=pushed,
    )
