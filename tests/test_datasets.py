"""Dataset fetching against a local HTTP server: checksum verified, offline is a clear error."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dataflywheel import datasets
from dataflywheel.errors import DatasetError, ValidationError
from helpers import free_port


@pytest.fixture
def publisher(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server publishing ml-latest-small.zip and its .md5, like GroupLens."""
    site = tmp_path / "site"
    site.mkdir()
    archive = site / "ml-latest-small.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\n1,2,4.0,9\n")
    digest = hashlib.md5(archive.read_bytes(), usedforsecurity=False).hexdigest()
    (site / "ml-latest-small.zip.md5").write_text(f"{digest}  ml-latest-small.zip\n")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(site), **kwargs)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", site
    finally:
        server.shutdown()


def test_fetch_verifies_and_unpacks(
    publisher: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = publisher
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path / "cache"))
    path = datasets.fetch("movielens-small", base_url=url)
    assert (path / "ratings.csv").read_text().startswith("userId,movieId")
    assert datasets.fetch("movielens-small", base_url="http://127.0.0.1:9") == path  # cached


def test_a_bad_checksum_stores_nothing(
    publisher: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, site = publisher
    (site / "ml-latest-small.zip.md5").write_text("0" * 32 + "  ml-latest-small.zip\n")
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="checksum"):
        datasets.fetch("movielens-small", base_url=url)
    assert not (tmp_path / "cache" / "ml-latest-small").exists()


def test_offline_and_unknown_names_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLYWHEEL_DATA_DIR", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="offline"):
        datasets.fetch("movielens-1m", base_url=f"http://127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(ValidationError) as error:
        datasets.fetch("netflix-prize")
    assert error.value.field == "name"
