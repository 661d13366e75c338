"""Public datasets: download from the publisher, verify the checksum, unpack into a cache.

MovieLens files are published by GroupLens with an ``.md5`` file beside each archive; the
archive is accepted only when its MD5 matches that published value.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import httpx

from dataflywheel.errors import DatasetError, ValidationError

GROUPLENS = "https://files.grouplens.org/datasets/movielens"
DATASETS = {
    "movielens-small": "ml-latest-small",
    "movielens-1m": "ml-1m",
    "movielens-25m": "ml-25m",
}


def cache_dir() -> Path:
    """``FLYWHEEL_DATA_DIR``, else ``~/.cache/dataflywheel/datasets``."""
    default = Path.home() / ".cache" / "dataflywheel" / "datasets"
    return Path(os.environ.get("FLYWHEEL_DATA_DIR", default))


def fetch(name: str, *, base_url: str = GROUPLENS, timeout: float = 30.0) -> Path:
    """The unpacked dataset folder, downloading and verifying it on first use."""
    if name not in DATASETS:
        raise ValidationError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}", field="name"
        )
    stem = DATASETS[name]
    target = cache_dir() / stem
    if target.is_dir():
        return target
    url = f"{base_url}/{stem}.zip"
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            expected = client.get(url + ".md5").raise_for_status().text.split()[0].lower()
            with tempfile.TemporaryDirectory() as tmp:
                archive = Path(tmp) / f"{stem}.zip"
                digest = hashlib.md5(usedforsecurity=False)
                with client.stream("GET", url) as response, archive.open("wb") as out:
                    response.raise_for_status()
                    for chunk in response.iter_bytes():
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != expected:
                    raise DatasetError(
                        f"{url} failed its checksum (md5 {digest.hexdigest()}, "
                        f"published {expected}); nothing was stored"
                    )
                _unpack(archive, stem, target)
    except httpx.HTTPError as exc:
        raise DatasetError(
            f"cannot download {url}: {exc}. Are you offline? Download it elsewhere and unpack "
            f"it into {target}, or point --ratings at a local ratings.csv"
        ) from exc
    return target


def _unpack(archive: Path, stem: str, target: Path) -> None:
    """Unpack into a temporary folder, then move it into place (never a half-written cache)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            if member.startswith("/") or ".." in Path(member).parts:
                raise DatasetError(f"unsafe path {member!r} in {archive.name}")
        zf.extractall(tmp)
        unpacked = Path(tmp) / stem
        shutil.move(str(unpacked if unpacked.is_dir() else Path(tmp)), target)
