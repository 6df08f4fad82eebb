"""The registry client against a registry on 127.0.0.1 (a socket: not a unit test)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kdist.packaging import oci, registry
from tests.unit.test_images import AMD64, ARM64, _tar, oci_layout

pytestmark = pytest.mark.integration


@pytest.fixture
def local_registry(tmp_path: Path) -> Iterator[str]:
    """A registry on 127.0.0.1 serving an OCI layout, behind an anonymous Bearer token."""
    root = oci_layout(
        tmp_path / "served", [(AMD64, [_tar({"r": b"amd"})]), (ARM64, [_tar({"r": b"arm"})])]
    )
    index = json.loads((root / "index.json").read_text())["manifests"][0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            port = self.server.server_address[1]  # type: ignore[index]  # an AF_INET pair
            host = f"127.0.0.1:{port}"
            if self.path.startswith("/token"):
                return self._send(200, json.dumps({"token": "t0k"}).encode(), "application/json")
            if self.headers.get("Authorization") != "Bearer t0k":
                self.send_response(401)
                self.send_header(
                    "WWW-Authenticate",
                    f'Bearer realm="http://{host}/token",service="test",scope="repository:base:pull"',
                )
                self.end_headers()
                return None
            kind, ref = self.path.split("/")[-2:]
            digest = index["digest"] if ref == "v1" else ref
            blob = root / "blobs/sha256" / digest.split(":")[-1]
            if not blob.is_file():
                return self._send(404, b"{}", "application/json")
            media = oci.OCI_INDEX if digest == index["digest"] else oci.OCI_MANIFEST
            return self._send(
                200, blob.read_bytes(), media if kind == "manifests" else "application/octet-stream"
            )

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_registry_pull_with_token_and_index(tmp_path: Path, local_registry: str) -> None:
    """A reference is pulled: token challenge answered, index followed, layers checked."""
    got = registry.pull(f"{local_registry}/base:v1", ARM64, tmp_path / "cache", timeout=5)
    assert got.origin == f"registry {local_registry}"
    assert got.layers[0].path.read_bytes() == _tar({"r": b"arm"})
    with pytest.raises(LookupError, match="has no base"):
        registry.pull(f"{local_registry}/base:v2", ARM64, tmp_path / "cache", timeout=5)
