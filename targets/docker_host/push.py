"""Push an image from the engine to the registry over the distribution API, one retried request
at a time.

`docker push` retries a layer's upload a few times, 5 to 15 s apart, and not the requests around
it (the manifest, the checks): through a registry that answered 503 to 30 % of requests, most
releases failed, and a retry of the whole push repeated its work. Here each request is retried
where it failed (targets/request_retries.py), and a layer the registry holds already is never
sent again (a HEAD first, by its digest).

The image comes from the engine as `docker save` writes it: the config, and each layer as an
uncompressed tar whose sha256 is the layer's diff id. Layers are pushed uncompressed
(`application/vnd.docker.image.rootfs.diff.tar`, a schema 2 media type every engine pulls), so
a layer's digest is known from the config without reading it, and an unchanged layer costs one
HEAD. The registry is on this host: its bytes cross no network.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, NamedTuple

import docker
import httpx

from domain.errors import ReleaseError, TransientError
from targets.docker_host.registry import send_registry_request
from targets.request_retries import status_failure

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar"


class Blob(NamedTuple):
    digest: str
    size: int
    media_type: str
    member: str  # its name in the saved archive


class Saved(NamedTuple):
    config: Blob
    layers: list[Blob]


@contextmanager
def saved_image(client: docker.DockerClient, image_id: str) -> Iterator[tarfile.TarFile]:
    """The image as `docker save` writes it, in a temporary file."""
    with tempfile.TemporaryFile(prefix="fm-image-") as spool:
        for chunk in client.images.get(image_id).save(chunk_size=1 << 20):
            spool.write(chunk)
        spool.seek(0)
        with tarfile.open(fileobj=spool, mode="r:") as archive:
            yield archive


def contents(archive: tarfile.TarFile, image_id: str) -> Saved:
    """The config and the layers (in order) of the saved image, each with its digest."""
    manifest = json.load(opened_member(archive, "manifest.json"))[0]
    config_name = manifest["Config"]
    config = json.load(opened_member(archive, config_name))
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(manifest["Layers"]):
        raise ReleaseError(f"the engine's export of {image_id[:19]} lists its layers wrongly")
    layers = [
        Blob(digest, member_size(archive, name), LAYER, name)
        for digest, name in zip(diff_ids, manifest["Layers"], strict=True)
    ]
    config_blob = Blob(image_id, member_size(archive, config_name), CONFIG, config_name)
    return Saved(config_blob, layers)


def member_size(archive: tarfile.TarFile, name: str) -> int:
    """A member's size in bytes (a link's: its target's, as extractfile follows it)."""
    data = opened_member(archive, name)
    data.seek(0, io.SEEK_END)
    return data.tell()


def manifest_of(saved: Saved) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": blob_entry(saved.config),
            "layers": [blob_entry(layer) for layer in saved.layers],
        },
        indent=3,
    ).encode()


def blob_entry(blob: Blob) -> dict[str, object]:
    return {"mediaType": blob.media_type, "size": blob.size, "digest": blob.digest}


class Uploader:
    """The requests of one push, each retried where it fails (see the module's docstring)."""

    def __init__(self, registry: str, auth: tuple[str, str] | None, timeout: float = 300):
        self.registry = registry
        self.http = httpx.Client(base_url=f"http://{registry}", auth=auth, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def send(self, what: str, request: Callable[[], httpx.Response]) -> httpx.Response:
        return send_registry_request(self.registry, what, request, during=f"pushing ({what})")

    def expect(self, response: httpx.Response, statuses: tuple[int, ...], what: str) -> None:
        if response.status_code in statuses:
            return
        body = response.text[:300].strip()
        detail = f"{what}: the registry answered {response.status_code}" + (
            f" {body}" if body else ""
        )
        if status_failure(response.status_code):  # still failing after every retry
            raise TransientError(f"registry {self.registry}: {detail}")
        raise ReleaseError(f"registry {self.registry}: {detail}")

    def has_blob(self, repository: str, digest: str) -> bool:
        path = f"/v2/{repository}/blobs/{digest}"
        response = self.send(f"HEAD {path}", lambda: self.http.head(path))
        if response.status_code == 404:
            return False
        self.expect(response, (200,), f"HEAD {path}")
        return True

    def upload(self, repository: str, blob: Blob, data: Callable[[], IO[bytes]]) -> bool:
        """Upload `blob` unless the registry has it; True if it was sent. Each of the upload's
        two requests (start a session, send the bytes) is retried on its own; a session the
        registry lost meanwhile (404, 416: a failed send may have left it half written) is
        started again, once."""
        if self.has_blob(repository, blob.digest):
            return False
        what = f"upload {blob.digest[:19]} ({blob.size} bytes) to {repository}"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)}
        for session in (1, 2):
            location = self.start_upload(repository)
            url = f"{location}{'&' if '?' in location else '?'}digest={blob.digest}"
            sent = self.send(what, lambda u=url: self.http.put(u, content=data(), headers=headers))
            if sent.status_code not in (404, 416) or session == 2:
                self.expect(sent, (201,), what)
                return True
        raise AssertionError("unreachable: the second session returns or raises")

    def start_upload(self, repository: str) -> str:
        """A new upload session; the URL its bytes go to (without their digest yet)."""
        start = f"POST /v2/{repository}/blobs/uploads/"
        started = self.send(start, lambda: self.http.post(f"/v2/{repository}/blobs/uploads/"))
        self.expect(started, (202,), start)
        return started.headers["Location"]

    def put_manifest(self, repository: str, tag: str, manifest: bytes) -> str:
        path = f"/v2/{repository}/manifests/{tag}"
        response = self.send(
            f"PUT {path}",
            lambda: self.http.put(path, content=manifest, headers={"Content-Type": MANIFEST}),
        )
        self.expect(response, (201,), f"PUT {path}")
        return response.headers.get("Docker-Content-Digest", "")


def push(
    client: docker.DockerClient,
    image_id: str,
    registry: str,
    repository: str,
    tag: str,
    auth: tuple[str, str] | None = None,
) -> list[str]:
    """`image_id` as `registry/repository:tag`; the digests of the blobs actually sent."""
    uploader = Uploader(registry, auth)
    sent: list[str] = []
    try:
        with saved_image(client, image_id) as archive:
            saved = contents(archive, image_id)
            for blob in [*saved.layers, saved.config]:
                if uploader.upload(repository, blob, lambda b=blob: opened(archive, b)):
                    sent.append(blob.digest)
            uploader.put_manifest(repository, tag, manifest_of(saved))
    finally:
        uploader.close()
    return sent


def opened(archive: tarfile.TarFile, blob: Blob) -> IO[bytes]:
    return opened_member(archive, blob.member)


def opened_member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    data = archive.extractfile(name)
    if data is None:
        raise ReleaseError(f"the engine's export has no data for {name}")
    return data
