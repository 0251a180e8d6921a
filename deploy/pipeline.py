"""`edgepad deploy` as a Python API: one bundle to one or several boards, atomically, verified, with rollback.

Per board: check the local bundle against its manifest, connect (known host keys only), take the lock, scan the
remote dir, upload what the board lacks into a staging release, verify every sha256 on the board, publish it as
releases/<id>, run the runtime's parity check there, and only when it passes switch `current` atomically; a
release that fails its check in any way is set aside and `current` never moves. Then prune old releases.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from edgepad.errors import DeployError, DriverIncompatibleError, EdgepadError

from . import manifest as manifest_io
from .board_ops import FAILED
from .health import HEALTH_TIMEOUT_S, HealthResult, health_check
from .npu_driver import DriverCompatibility, check_release
from .release import DeployObserver, plan_release, upload_release, verify_and_repair
from .remote import Board, resolve_remote_dir
from .ssh import HostSpec, SshOptions, connect

CONNECTION_ERRORS = (OSError, EOFError, paramiko.SSHException)
DEFAULT_PARALLEL = 4


@dataclass
class BoardOptions:
    ssh: SshOptions = field(default_factory=SshOptions)
    remote_dir: str = "~/edgepad"
    remote_python: str = "python3"


@dataclass
class DeployOptions:
    bundle: Path
    board: BoardOptions = field(default_factory=BoardOptions)
    keep: int = 5
    backend: str | None = None  # passed to the runtime's --backend; None lets it choose
    dry_run: bool = False
    health_check: bool = True
    health_timeout: float = HEALTH_TIMEOUT_S
    break_lock: bool = False  # free a lock left by a client that is gone (the message names its holder)


@dataclass
class DeployResult:
    host: str
    release: str
    previous: str | None
    bytes_uploaded: int = 0
    files_uploaded: int = 0
    files_reused: int = 0
    files_repaired: list[str] = field(default_factory=list)  # caught by the sha256 check, sent again
    health: HealthResult | None = None
    rolled_back: bool = False  # the release failed its health check and was set aside; `current` never moved
    broke_lock: str | None = None  # who held the lock that --break-lock freed
    pruned: list[str] = field(default_factory=list)
    dry_run: bool = False
    plan: dict | None = None
    seconds: float = 0.0
    npu_driver: DriverCompatibility | None = None  # the board's galcore against the release's NBGs

    @property
    def passed(self) -> bool:
        return not self.rolled_back and (self.health is None or self.health.passed)

    @property
    def failure(self) -> str | None:
        """One line: which check failed, how, and what runs on the board now."""
        if self.passed or self.health is None:
            return None
        what = self.health.error or "the board's outputs differ from the host's beyond the tolerance"
        return (f"{self.host}: health check of release {self.release} failed: {what}; it was set aside as "
                f"releases/{FAILED}{self.release} and `current` still points to {self.previous or 'nothing'}")

    def to_json(self) -> dict:
        data = {
            "host": self.host, "release": self.release, "previous": self.previous,
            "bytes_uploaded": self.bytes_uploaded, "files_uploaded": self.files_uploaded,
            "files_reused": self.files_reused, "files_repaired": self.files_repaired,
            "health": self.health.to_json() if self.health else None, "rolled_back": self.rolled_back,
            "pruned": self.pruned, "passed": self.passed, "seconds": round(self.seconds, 3),
            "error": self.failure, "broke_lock": self.broke_lock,
            "npu_driver": self.npu_driver.to_json() if self.npu_driver else None,
        }
        if self.dry_run:
            data["dry_run"] = True
            data["plan"] = self.plan
        return data


@dataclass
class HostOutcome:
    host: str
    result: DeployResult | None = None
    error: str | None = None
    npu_driver: dict | None = None  # set when the board's NPU driver refused the release

    @property
    def passed(self) -> bool:
        return self.error is None and self.result is not None and self.result.passed


@contextmanager
def open_board(spec: HostSpec, options: BoardOptions):
    with connect(spec, options.ssh) as connection:
        remote_dir = spec.remote_dir or options.remote_dir
        yield Board(connection, resolve_remote_dir(connection, remote_dir), options.remote_python)


def load_bundle(bundle: Path) -> manifest_io.Manifest:
    manifest = manifest_io.load(bundle)
    manifest_io.verify_local(bundle, manifest)
    return manifest


def deploy_host(spec: HostSpec, options: DeployOptions, observer: DeployObserver | None = None,
                manifest: manifest_io.Manifest | None = None) -> DeployResult:
    """Deploy to one board. Raises DeployError/HostKeyError when it cannot; returns a failed health result
    (the release set aside, `current` unchanged) when the new release does not compute what the host does."""
    observer = observer or DeployObserver()
    start = time.perf_counter()
    manifest = manifest or load_bundle(options.bundle)
    with open_board(spec, options.board) as board, ExitStack() as held:
        phase, plan, published = "scan", None, False
        try:
            observer.phase(board.name, phase)
            driver = board_driver_check(board, manifest)  # before the lock: a refusal leaves no trace
            broke_lock = None
            if not options.dry_run:  # a dry run writes nothing, not even the lock file
                broke_lock = board.break_lock() if options.break_lock else None
                held.enter_context(board.deploy_lock("deploy"))
            plan = plan_release(options.bundle, manifest, board.op("scan"))
            result = DeployResult(board.name, plan.release, plan.current, bytes_uploaded=plan.bytes_to_send,
                                  files_uploaded=len(plan.send), files_reused=len(plan.reuse), broke_lock=broke_lock,
                                  npu_driver=driver)
            if options.dry_run:
                result.dry_run, result.plan = True, plan.to_json()
                result.seconds = time.perf_counter() - start
                return result
            phase = "upload"
            observer.phase(board.name, phase)
            upload_release(board, options.bundle, plan, observer)
            phase = "verify"
            observer.phase(board.name, phase)
            result.files_repaired = verify_and_repair(board, options.bundle, plan, observer)
            by_path = {f.path: f for f in plan.files}
            result.bytes_uploaded += sum(by_path[p].size for p in result.files_repaired)
            phase = "publish"
            observer.phase(board.name, phase)
            board.op("finalize", staging=plan.staging, release=plan.release)  # flushed, then one rename
            published = True
            if options.health_check:
                phase = "health"
                observer.phase(board.name, phase)
                result.health = health_check(board, plan.release, options.bundle, options.backend,
                                             options.health_timeout)
                if not result.health.passed:
                    board.op("mark_failed", release=plan.release)
                    result.rolled_back = True
            if not result.rolled_back:
                phase = "switch"
                observer.phase(board.name, phase)
                board.op("switch", release=plan.release)
            phase = "prune"
            observer.phase(board.name, phase)
            # a failed release stays for a look until the next deploy; the previous one stays as the rollback target
            protect = [plan.release, FAILED + plan.release] + ([plan.current] if plan.current else [])
            result.pruned = board.op("prune", keep=options.keep, protect=protect)["removed"]
            observer.phase(board.name, "done" if result.passed else "set aside")
        except CONNECTION_ERRORS as error:
            raise DeployError(_lost_message(board.name, phase, error, plan, published)) from None
        except DeployError as error:
            if plan is None or "`current`" in str(error):
                raise
            raise DeployError(f"{error}; `current` still points to {plan.current or 'nothing'}") from None
    result.seconds = time.perf_counter() - start
    return result


def board_driver_check(board: Board, manifest: manifest_io.Manifest) -> DriverCompatibility | None:
    """The board's galcore against the bundle's NBGs; raises DriverIncompatibleError for a pair documented not to
    load (deploy/npu_driver.py), before anything is written. None when the bundle has no NBG."""
    if not any(card.targets.vim3 is not None for card in manifest.models.values()):
        return None
    facts = board.op("npu_driver")
    compatibility = check_release(manifest.models, facts.get("npu_driver"), facts.get("npu_driver_source"))
    refusal = compatibility.refusal(board.name)
    if refusal:
        raise DriverIncompatibleError(refusal, compatibility.to_json())
    return compatibility


def rollback_host(spec: HostSpec, options: BoardOptions, to_release: str | None = None,
                  break_lock: bool = False) -> dict:
    """`edgepad rollback`: current -> the release before it (or `to_release`), under the deploy lock."""
    with open_board(spec, options) as board:
        broke_lock = board.break_lock() if break_lock else None
        with board.deploy_lock("rollback"):
            scan = board.op("scan")
            complete = [r["id"] for r in scan["releases"]]
            current = scan["current"]
            if to_release is None:
                older = [r for r in complete if current is None or r < current]
                if not older:
                    raise DeployError(f"{board.name}: no release older than {current or '(none)'} under "
                                      f"{board.root}; releases there: {', '.join(complete) or 'none'}")
                to_release = older[-1]
            elif to_release not in complete:
                raise DeployError(f"{board.name}: --to {to_release}: no such release under {board.root}; "
                                  f"choose from {', '.join(complete) or 'none'}")
            board.op("switch", release=to_release)
        result = {"host": board.name, "previous": current, "current": to_release}
        return {**result, "broke_lock": broke_lock} if broke_lock else result


def deploy_many(hosts: list[HostSpec], options: DeployOptions, observer: DeployObserver | None = None,
                parallel: int = DEFAULT_PARALLEL) -> list[HostOutcome]:
    """Deploy to every host, at most `parallel` at once; one host's failure does not stop the others."""
    manifest = load_bundle(options.bundle)

    def one(spec: HostSpec) -> HostOutcome:
        try:
            return HostOutcome(str(spec), deploy_host(spec, options, observer, manifest))
        except DriverIncompatibleError as error:
            return HostOutcome(str(spec), error=str(error), npu_driver=error.compatibility)
        except EdgepadError as error:
            return HostOutcome(str(spec), error=str(error))

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(hosts)))) as pool:
        return list(pool.map(one, hosts))


def _lost_message(host: str, phase: str, error: BaseException, plan, published: bool) -> str:
    reason = f"{type(error).__name__}: {error}".rstrip(": ")
    where = f"`current` still points to {plan.current if plan and plan.current else 'nothing'}"
    if phase == "switch":
        where += f" unless the switch landed (then to {plan.release}, which passed its health check)"
    elif phase == "prune":
        where = f"`current` points to {plan.release} (checked) or, if it failed its check, still to {plan.current}"
    elif published:
        where += f" (release {plan.release} is on the board but unchecked; the next deploy checks its own)"
    return f"{host}: connection lost during {phase} ({reason}); {where}; run the deploy again"
