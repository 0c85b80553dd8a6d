"""Model directories: the trained model plus `manifest.json`.

The manifest records the format version, the library versions it was trained with, a hash of
the training data, its metrics and the sha256 of every file. Loading checks all of that before
unpickling anything: a pickle from another scikit-learn or numpy version can load and then
predict nonsense, so a mismatch is refused with a message saying how to fix it.
"""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import joblib

from shared.errors import ConfigurationError

from .pipeline import TrainedModel

# 8: addressee lines against profiles; 7: profile texts in other languages; 6: "unit
# addressed" pointer; 5: disguised-attachment pair feature; 4: vectors stored terms-first
FORMAT_VERSION = 8
MODEL_FILE = "model.joblib"
MANIFEST = "manifest.json"
_LIBRARIES = ("scikit-learn", "numpy", "scipy", "spacy", "spacy-lookups-data", "joblib")


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), **{lib: version(lib) for lib in _LIBRARIES}}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(model: TrainedModel, directory: Path, *, name: str, data_hash: str,
         metrics: dict[str, Any], tenant: str, vocabulary_hash: str | None = None,
         ) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, directory / MODEL_FILE, compress=3)
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tenant": tenant,
        "libraries": library_versions(),
        "training_data_sha256": data_hash,
        "vocabulary_sha256": vocabulary_hash,
        "threshold": model.routing.threshold,
        "target_precision": model.routing.target_precision,
        "classes": model.routing.classes,
        "metrics": metrics,
        "files": {MODEL_FILE: _sha256(directory / MODEL_FILE)},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                      encoding="utf-8")
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.exists():
        raise ConfigurationError(f"{directory}: no {MANIFEST}; is this a model directory?")
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid JSON: {exc}") from exc
    return manifest


def check(manifest: dict[str, Any], directory: Path) -> None:
    """Raise ConfigurationError unless the model can be loaded safely here."""
    fmt = manifest.get("format_version")
    if fmt != FORMAT_VERSION:
        raise ConfigurationError(
            f"model {directory} has format version {fmt}, this Postfordeler reads version "
            f"{FORMAT_VERSION}: retrain it with `postfordeler train`")
    trained = manifest.get("libraries") or {}
    here = library_versions()
    wrong = [f"{lib} {trained.get(lib)} (installed: {here[lib]})" for lib in _LIBRARIES
             if trained.get(lib) != here[lib]]
    if wrong:
        raise ConfigurationError(
            f"model {directory} was trained with other library versions: {', '.join(wrong)}; "
            "retrain it with `postfordeler train` or install the versions it was trained with")
    for name, digest in (manifest.get("files") or {}).items():
        path = directory / name
        if not path.exists() or _sha256(path) != digest:
            raise ConfigurationError(f"model {directory}: {name} is missing or does not match "
                                     "the sha256 in its manifest")
    if MODEL_FILE not in (manifest.get("files") or {}):
        raise ConfigurationError(f"model {directory}: the manifest does not list {MODEL_FILE}")


def load(directory: Path) -> tuple[TrainedModel, dict[str, Any]]:
    manifest = read_manifest(directory)
    check(manifest, directory)
    model = joblib.load(directory / MODEL_FILE)  # checked against the manifest's sha256 above
    if not isinstance(model, TrainedModel):
        raise ConfigurationError(f"model {directory}: {MODEL_FILE} is not a routing model")
    return model, manifest
