"""Versioned model directories: `<home>/models/<model>/<version>/` with a `manifest.json`
(feature service, data window, metrics, settings, SHA-256 of every file) and a `latest`
pointer that is switched atomically, and only after the version has validated."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from vitrine.config import Home
from vitrine.errors import VitrineError

MANIFEST = "manifest.json"


class BadModelVersion(VitrineError):
    pass


def models_dir(home: Home, model: str) -> Path:
    return home.models / model


def new_version_dir(home: Home, model: str) -> Path:
    version = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid() % 10000:04d}"
    path = models_dir(home, model) / version
    path.mkdir(parents=True, exist_ok=False)
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checksums(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): _sha256(p) for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def write_manifest(directory: Path, **fields: object) -> dict:
    manifest = {"version": directory.name, **fields, "checksums": checksums(directory)}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return manifest


def verify(directory: Path) -> dict:
    """The manifest, after checking every file against its checksum (and that none is missing)."""
    path = directory / MANIFEST
    if not path.exists():
        raise BadModelVersion(f"{directory}: no {MANIFEST}")
    manifest = json.loads(path.read_text())
    actual = checksums(directory)
    expected = manifest.get("checksums", {})
    if actual != expected:
        changed = sorted(set(actual.items()) ^ set(expected.items()))
        raise BadModelVersion(f"{directory}: files differ from the manifest: {[c[0] for c in changed][:5]}")
    return manifest


def publish(home: Home, model: str, directory: Path) -> None:
    """Point `latest` at a verified version (atomic rename of a temporary pointer file)."""
    verify(directory)
    root = models_dir(home, model)
    tmp = root / f".latest-{os.getpid()}"
    tmp.write_text(directory.name + "\n")
    os.replace(tmp, root / "latest")


def latest(home: Home, model: str) -> Path:
    pointer = models_dir(home, model) / "latest"
    if not pointer.exists():
        raise BadModelVersion(f"no published {model} model in {models_dir(home, model)}: train one first")
    return models_dir(home, model) / pointer.read_text().strip()
