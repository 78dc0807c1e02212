"""ECR: repositories, image lookups and the registry login for a docker push."""

from __future__ import annotations

import base64
import json
from typing import Any

from botocore.exceptions import ClientError

from domain.errors import ReleaseError
from targets.aws.clients import PROVISION_HINT, error_code
from targets.aws.decisions import parse_image, repository_name
from targets.images import MANIFEST_TYPES, TaggedImage


class Ecr:
    def __init__(self, client: Any):
        self.client = client

    def repository(self, name: str, create: bool = False) -> dict[str, Any] | None:
        """The repository, created (immutable tags, scan on push) if asked and missing."""
        try:
            return self.client.describe_repositories(repositoryNames=[name])["repositories"][0]
        except ClientError as exc:
            if error_code(exc) != "RepositoryNotFoundException":
                raise
        if not create:
            return None
        try:
            return self.client.create_repository(
                repositoryName=name,
                imageTagMutability="IMMUTABLE",
                imageScanningConfiguration={"scanOnPush": True},
            )["repository"]
        except ClientError as exc:  # a concurrent push created it first
            if error_code(exc) != "RepositoryAlreadyExistsException":
                raise
            return self.repository(name)

    def verify_repository(self, name: str) -> str:
        """verify's probe: the repository's URI, or what to do when it does not exist."""
        found = self.repository(name)
        if found is None:
            raise ReleaseError(f"ECR repository {name} does not exist: {PROVISION_HINT}")
        return found["repositoryUri"]

    def image(self, name: str, tag: str) -> dict[str, Any] | None:
        """The image detail of `name:tag`, or None when the repository or the tag is absent."""
        try:
            found = self.client.describe_images(repositoryName=name, imageIds=[{"imageTag": tag}])
        except ClientError as exc:
            if error_code(exc) in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return None
            raise
        return next(iter(found.get("imageDetails", [])), None)

    def manifest(self, name: str, tag: str) -> TaggedImage | None:
        """What `name:tag` holds: its digest, and its config digest (= the local image id of the
        image pushed; empty for an index or manifest list), or None when the tag is absent."""
        detail = self.image(name, tag)
        if detail is None:
            return None
        images = self.client.batch_get_image(
            repositoryName=name,
            imageIds=[{"imageTag": tag}],
            acceptedMediaTypes=list(MANIFEST_TYPES),
        ).get("images", [])
        manifest = json.loads((images[0].get("imageManifest") if images else None) or "{}")
        return TaggedImage(
            digest=detail["imageDigest"],
            config_digest=(manifest.get("config") or {}).get("digest", ""),
        )

    def digest_of(self, image: str) -> str:
        """The digest an image reference names or ECR knows for it; else the reference itself."""
        ref = parse_image(image)
        if ref.digest:
            return ref.digest
        if ref.tag and ".ecr." in ref.repository:
            detail = self.image(repository_name(ref.repository), ref.tag)
            if detail:
                return detail["imageDigest"]
        return image

    def login(self) -> dict[str, str]:
        """docker-py auth_config for the registry. Holds a password: never log it."""
        data = self.client.get_authorization_token()["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        if not password:
            raise ReleaseError("ECR returned an authorization token without a password")
        return {"username": user, "password": password, "serveraddress": data["proxyEndpoint"]}
