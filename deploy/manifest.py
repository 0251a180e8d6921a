"""A bundle's `manifest.json`: every file with its sha256 and size, the versions that built it, the model cards.

A release on the board is a copy of the bundle with this manifest in it, so the same file proves both ends.
"""
from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from edgepad.errors import InputFileError
from edgepad.hashing import sha256_file  # noqa: F401  (re-exported for deploy.release)

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class ManifestFile:
    path: str  # POSIX, relative to the bundle root
    sha256: str
    size: int


@dataclass
class Manifest:
    files: list[ManifestFile]
    versions: dict
    models: dict  # model name -> its edgepad.json card

    def to_json(self) -> dict:
        return {
            "edgepad_manifest": 1,
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in self.files],
            "versions": self.versions,
            "models": self.models,
        }

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def check_relative_path(path: str, where: str) -> str:
    """A manifest path must stay inside the bundle (and so inside the release on the board)."""
    normal = posixpath.normpath(path) if path else ""
    if (not path or path.startswith("/") or normal != path or any(c in ("", ".", "..") for c in path.split("/"))
            or "\\" in path or "\0" in path or "\n" in path):
        raise InputFileError(f"{where}: file path {path!r} leaves the bundle or is not a plain relative path; "
                             "rebuild the bundle with `edgepad bundle`")
    return path


def refuse_symlink(path: Path) -> None:
    """A bundle holds regular files only: a link would carry whatever it points to (a key, /etc/shadow)."""
    if path.is_symlink():
        raise InputFileError(f"{path}: a symbolic link (to {os.readlink(path)}) in the bundle; bundles hold regular "
                             "files only: replace it with a copy of the file, or remove it")


def seal(bundle_dir: str | os.PathLike, versions: dict, models: dict) -> Manifest:
    """Hash every file under bundle_dir (except the manifest itself) and write manifest.json."""
    root = Path(bundle_dir)
    files = []
    for path in sorted(root.rglob("*")):
        refuse_symlink(path)  # rglob lists links without following them; is_file() would follow
        if not path.is_file():
            continue
        relative = path.relative_to(root).as_posix()
        if relative == MANIFEST_NAME:
            continue
        check_relative_path(relative, str(root))
        files.append(ManifestFile(relative, sha256_file(path), path.stat().st_size))
    manifest = Manifest(files, versions, models)
    (root / MANIFEST_NAME).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    return manifest


def load(bundle_dir: str | os.PathLike) -> Manifest:
    path = Path(bundle_dir) / MANIFEST_NAME
    if not path.is_file():
        raise InputFileError(f"{bundle_dir}: no {MANIFEST_NAME}; build the bundle with "
                             f"`edgepad bundle -o {bundle_dir} ...`")
    try:
        data = json.loads(path.read_text())
        files = [ManifestFile(check_relative_path(f["path"], str(path)), str(f["sha256"]), int(f["size"]))
                 for f in data["files"]]
    except (ValueError, KeyError, TypeError) as error:
        raise InputFileError(f"{path}: not an edgepad manifest ({error}); "
                             "rebuild the bundle with `edgepad bundle`") from None
    return Manifest(files, data.get("versions", {}), data.get("models", {}))


def verify_local(bundle_dir: str | os.PathLike, manifest: Manifest) -> None:
    """Every listed file is present with its recorded size and sha256, before anything leaves the host."""
    root = Path(bundle_dir)
    for entry in manifest.files:
        path = root / entry.path
        for parent in [*reversed(Path(entry.path).parents), Path(entry.path)][1:]:
            refuse_symlink(root / parent)
        if not path.is_file():
            raise InputFileError(f"{path}: listed in {MANIFEST_NAME} but missing; "
                                 "rebuild the bundle with `edgepad bundle`")
        if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
            raise InputFileError(f"{path}: changed since the bundle was built (sha256 differs from {MANIFEST_NAME}); "
                                 "rebuild the bundle with `edgepad bundle`")
