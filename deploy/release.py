"""One release on the board: plan what to send, reuse what the board has, upload, verify, publish, switch, prune.

Files go into ROOT/releases/.partial-<id>/ (each to a temporary name, renamed when complete); only after every
file's sha256 matches the manifest does the folder become releases/<id> and `current` move to it. A connection
cut at any point before the switch leaves `current` where it was.
"""
from __future__ import annotations

import datetime
import hashlib
import posixpath
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from edgepad.errors import DeployError

from .board_ops import PARTIAL
from .manifest import MANIFEST_NAME, Manifest, ManifestFile, sha256_file
from .remote import Board, disk_full_message

SPACE_MARGIN_BYTES = 1 << 20  # folders, the lock and the health output need a little room too


class DeployObserver:
    """Progress hooks (a progress bar, a log); the default does nothing."""

    def phase(self, host: str, name: str) -> None: ...

    def upload_start(self, host: str, files: int, total_bytes: int) -> None: ...

    def bytes_sent(self, host: str, path: str, sent: int) -> None: ...

    def file_sent(self, host: str, path: str) -> None: ...

    def upload_end(self, host: str) -> None: ...


@dataclass
class ReleasePlan:
    release: str
    current: str | None
    send: list[ManifestFile]
    reuse: list[tuple[str, str, str]]  # (release or cut upload on the board, its path, path in the new release)
    files: list[ManifestFile]  # everything the release holds, manifest.json included
    stale: list[str] = field(default_factory=list)  # leftovers of cut uploads and failed releases

    @property
    def staging(self) -> str:
        return PARTIAL + self.release

    @property
    def bytes_to_send(self) -> int:
        return sum(f.size for f in self.send)

    def to_json(self) -> dict:
        return {
            "release": self.release, "current": self.current,
            "send": [{"path": f.path, "size": f.size} for f in self.send],
            "reuse": [{"path": target, "from_release": release} for release, _source, target in self.reuse],
            "bytes_to_send": self.bytes_to_send, "stale": self.stale,
        }


def release_files(bundle_dir: Path, manifest: Manifest) -> list[ManifestFile]:
    """The manifest's files plus manifest.json itself, which a release carries too."""
    path = Path(bundle_dir) / MANIFEST_NAME
    return list(manifest.files) + [ManifestFile(MANIFEST_NAME, sha256_file(path), path.stat().st_size)]


def new_release_id(bundle_dir: Path, taken: set[str]) -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    digest = hashlib.sha256((Path(bundle_dir) / MANIFEST_NAME).read_bytes()).hexdigest()[:8]
    release, n = f"{stamp}-{digest}", 1
    while release in taken:
        n += 1
        release = f"{stamp}-{digest}-{n}"
    return release


def plan_release(bundle_dir: Path, manifest: Manifest, scan: dict) -> ReleasePlan:
    """What to send and what the board can copy from its own complete releases (same sha256, any path)."""
    on_board: dict[str, tuple[str, str]] = {}
    for release in scan.get("resumable", []) + scan["releases"]:  # complete releases win, the newest last
        for path, digest in release["files"].items():
            on_board[digest] = (release["id"], path)
    files = release_files(bundle_dir, manifest)
    send, reuse = [], []
    for entry in files:
        if entry.sha256 in on_board:
            source_release, source_path = on_board[entry.sha256]
            reuse.append((source_release, source_path, entry.path))
        else:
            send.append(entry)
    taken = {r["id"] for r in scan["releases"]} | {n[len(PARTIAL):] for n in scan["partial"]}
    return ReleasePlan(new_release_id(bundle_dir, taken), scan["current"], send, reuse, files,
                       stale=scan["partial"] + scan["failed"])


def upload_release(board: Board, bundle_dir: Path, plan: ReleasePlan, observer: DeployObserver) -> None:
    """Create the staging folder, link reused files, send the rest (temporary name, then rename).

    A reused file that vanished since the scan is left to verify_and_repair, which sends it."""
    dirs = sorted({posixpath.dirname(f.path) for f in plan.files} - {""})
    board.op("prepare", staging=plan.staging, dirs=dirs, reuse=[list(r) for r in plan.reuse])
    check_space(board, plan.bytes_to_send)  # after prepare, which removed the leftovers of earlier failures
    send_files(board, bundle_dir, plan.staging, plan.send, observer)


def check_space(board: Board, needed: int) -> None:
    space = board.op("space")
    if space["free"] < needed + SPACE_MARGIN_BYTES:
        raise DeployError(disk_full_message(board.name, board.root, space["free"], needed + SPACE_MARGIN_BYTES))


def send_files(board: Board, bundle_dir: Path, release_dir: str, files: list[ManifestFile],
               observer: DeployObserver) -> None:
    sftp = board.connection.sftp
    observer.upload_start(board.name, len(files), sum(f.size for f in files))
    for entry in files:
        final = board.release_path(release_dir, entry.path)
        temporary = f"{final}.part-{secrets.token_hex(4)}"
        sent = [0]

        def progress(transferred: int, _total: int, entry=entry, sent=sent) -> None:
            observer.bytes_sent(board.name, entry.path, transferred - sent[0])
            sent[0] = transferred

        try:
            with open(Path(bundle_dir) / entry.path, "rb") as local:
                sftp.putfo(local, temporary, file_size=entry.size, callback=progress, confirm=True)
        except OSError as error:
            # SFTP v3 reports a full disk as a bare "Failure": ask the board how much room is left (unless the
            # link itself timed out: then asking would only wait again)
            link_alive = board.connection.transport.is_active() and not isinstance(error, TimeoutError)
            if link_alive and board.op("space")["free"] < entry.size + SPACE_MARGIN_BYTES:
                raise DeployError(f"{disk_full_message(board.name, board.root)} (while sending {entry.path})") from None
            raise
        sftp.posix_rename(temporary, final)
        observer.file_sent(board.name, entry.path)
    observer.upload_end(board.name)


def verify_release(board: Board, release_dir: str, files: list[ManifestFile]) -> list[str]:
    """Paths whose sha256 or size on the board differ from the manifest (missing files included)."""
    found = board.op("hash", release=release_dir, paths=[f.path for f in files])
    bad = []
    for entry in files:
        got = found.get(entry.path)
        if got is None or got[0] != entry.sha256 or int(got[1]) != entry.size:
            bad.append(entry.path)
    return bad


def verify_and_repair(board: Board, bundle_dir: Path, plan: ReleasePlan, observer: DeployObserver) -> list[str]:
    """Check every file on the board; send again what does not match, once. Returns the paths caught."""
    caught = verify_release(board, plan.staging, plan.files)
    if caught:
        by_path = {f.path: f for f in plan.files}
        send_files(board, bundle_dir, plan.staging, [by_path[p] for p in caught], observer)
        still_bad = verify_release(board, plan.staging, plan.files)
        if still_bad:
            raise DeployError(
                f"{board.name}: sha256 of {', '.join(still_bad[:3])}{' …' if len(still_bad) > 3 else ''} on the board "
                f"differs from the manifest even after sending it again (disk or memory fault?); `current` still "
                f"points to {plan.current or 'nothing'}")
    return caught
