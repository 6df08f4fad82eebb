"""Pulling a base image from a registry (OCI distribution API), anonymously, for one platform.

Enough of the protocol for public base images: `GET /v2/<name>/manifests/<ref>` (an index is
followed to the platform's manifest), the config and layer blobs, and the Bearer token dance
(`WWW-Authenticate: Bearer realm=...` answered with an anonymous token). Every blob is
checked against its digest (layers against the config's diff ids, after unpacking). Plain
HTTP is used only for registries on loopback addresses (a local test registry).

Failures raise LookupError saying which registry and why (unreachable, no such image, no
variant for the platform), for :func:`kdist.packaging.bases.resolve` to put in its message.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from kdist.model import Platform
from kdist.packaging import bases
from kdist.packaging.oci import sha256_digest

DOCKER_HUB = "registry-1.docker.io"
_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
_LOOPBACK = ("localhost", "127.", "[::1]")
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def split_reference(ref: str) -> tuple[str, str, str]:
    """`host/name:tag` or `name@sha256:...` -> (registry host, repository, tag or digest)."""
    name, _, digest = ref.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:  # Docker Hub, where official images live under library/
        host, path = DOCKER_HUB, name if slash else f"library/{name}"
    host = DOCKER_HUB if host == "docker.io" else host
    tag = ""
    if ":" in path.rsplit("/", 1)[-1]:
        path, _, tag = path.rpartition(":")
    return host, path, digest or tag or "latest"


class Client:
    """One repository on one registry, with the token it was given (if any)."""

    def __init__(self, host: str, repository: str, timeout: float) -> None:
        self.host = host
        self.repository = repository
        self.timeout = timeout
        scheme = "http" if host.startswith(_LOOPBACK) else "https"
        self.base = f"{scheme}://{host}/v2/{repository}"
        self.token = ""

    def get(self, path: str, accept: str = "") -> Any:  # noqa: ANN401 - an HTTP response
        """GET base/path, answering one Bearer challenge; raise LookupError on any failure."""
        for attempt in range(2):
            request = urllib.request.Request(f"{self.base}/{path}")  # noqa: S310 - http(s) only
            if accept:
                request.add_header("Accept", accept)
            if self.token:
                request.add_header("Authorization", f"Bearer {self.token}")
            try:
                return urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310
            except urllib.error.HTTPError as exc:
                challenge = exc.headers.get("WWW-Authenticate", "")
                if exc.code == 401 and attempt == 0 and challenge.startswith("Bearer"):
                    self.token = self._token(challenge)
                    continue
                if exc.code == 404:
                    msg = f"registry {self.host} has no {self.repository} ({path})"
                    raise LookupError(msg) from exc
                msg = f"registry {self.host} refused {self.repository}/{path}: HTTP {exc.code}"
                raise LookupError(msg) from exc
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                msg = f"registry {self.host} is not reachable ({reason})"
                raise LookupError(msg) from exc
        msg = f"registry {self.host} refused the anonymous token"
        raise LookupError(msg)

    def _token(self, challenge: str) -> str:
        fields = dict(_CHALLENGE.findall(challenge))
        realm = fields.pop("realm", "")
        if not realm.startswith(("https://", "http://")):
            msg = f"registry {self.host} asks for credentials kdist does not have"
            raise LookupError(msg)
        query = urllib.parse.urlencode(fields)
        try:
            with urllib.request.urlopen(f"{realm}?{query}", timeout=self.timeout) as answer:  # noqa: S310
                doc = json.loads(answer.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            msg = f"registry {self.host}: no anonymous token from {realm} ({exc})"
            raise LookupError(msg) from exc
        return str(doc.get("token") or doc.get("access_token") or "")

    def blob(self, digest: str) -> bytes:
        """A small blob (a manifest or config), checked against its digest."""
        with self.get(f"blobs/{digest}") as answer:
            data: bytes = answer.read()
        _check(self.host, digest, data)
        return data


def _check(host: str, digest: str, data: bytes) -> None:
    if sha256_digest(data) != digest:
        msg = f"registry {host} sent content that does not match {digest}"
        raise LookupError(msg)


def pull(ref: str, platform: Platform, cache: Path, *, timeout: float = 30.0) -> bases.BaseImage:
    """The image `ref` for `platform` from its registry, layers unpacked into `cache`."""
    host, repository, tag = split_reference(ref)
    client = Client(host, repository, timeout)
    manifest = _manifest(client, tag, ref, platform)
    config = json.loads(client.blob(manifest["config"]["digest"]))
    if (config.get("os"), config.get("architecture")) != (platform.os, platform.arch):
        msg = f"registry {host}: {ref} is not built for {platform}"
        raise LookupError(msg)
    diff_ids = list(config.get("rootfs", {}).get("diff_ids") or [])
    layers = manifest.get("layers") or []
    if len(diff_ids) != len(layers):
        msg = f"registry {host}: {ref} lists {len(layers)} layers for {len(diff_ids)} diff ids"
        raise LookupError(msg)
    blobs = []
    for layer, diff_id in zip(layers, diff_ids, strict=True):
        with client.get(f"blobs/{layer['digest']}") as answer:
            blobs.append(bases.unpack_layer(ref, answer, cache, diff_id))
    return bases.BaseImage(ref, f"registry {host}", config, tuple(blobs))


def _manifest(client: Client, tag: str, ref: str, platform: Platform) -> dict[str, Any]:
    with client.get(f"manifests/{tag}", _ACCEPT) as answer:
        data: bytes = answer.read()
        kind = answer.headers.get("Content-Type", "")
    if tag.startswith("sha256:"):
        _check(client.host, tag, data)
    doc: dict[str, Any] = json.loads(data)
    if kind in _INDEX_TYPES or doc.get("mediaType") in _INDEX_TYPES:
        for entry in doc.get("manifests", []):
            wanted = entry.get("platform") or {}
            if (wanted.get("os"), wanted.get("architecture")) == (platform.os, platform.arch):
                return _manifest(client, entry["digest"], ref, platform)
        msg = f"registry {client.host}: {ref} has no {platform} variant"
        raise LookupError(msg)
    return doc
