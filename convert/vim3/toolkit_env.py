"""The VeriSilicon toolkit's own virtual environment: find it, install it, ask it questions.

acuitylite pins TensorFlow 2.17, numpy 1.26, onnx 1.16 and protobuf 3.20, and needs torch at import: it cannot live
in edgepad's environment. It gets its own venv under the toolkit home, and edgepad talks to it only by running
`toolkit_worker.py` there with a JSON request file and reading back a JSON result file.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from edgepad.errors import ToolkitError, UsageError

ACUITYLITE_VERSION = "6.57.1"
TOOLKIT_REQUIREMENTS = (f"acuitylite=={ACUITYLITE_VERSION}", "torch")
SUPPORTED_PYTHONS = ("3.10", "3.12", "3.8")  # acuitylite ships cp38, cp310 and cp312 wheels only
MARKER_NAME = "edgepad-toolkit.json"
WORKER = Path(__file__).with_name("toolkit_worker.py")
INSTALL_HINT = "run `edgepad toolkit install` (once, about 8 GB)"

# NBG format (the major of the 32-bit word at byte 4 of the header) -> the acuitylite release whose bundled x86
# `vsi_sdk` writes it. The SDK decides the format, not acuitylib (measured: 6.57.1's acuitylib exporting with 6.45.0's
# vsi_sdk wrote an NBG byte-identical to 6.45.0's own): 6.27.0-6.45.0 write 0x00010020, 6.48.0-6.57.1 0x00020005.
# Khadas' VIM3 NBGs are 0x0001000F; format 1 is the default, the oldest that works with this acuitylib.
NBG_FORMAT_SDKS = {1: "6.45.0", 2: ACUITYLITE_VERSION}
DEFAULT_NBG_FORMAT = 1

# Board -> the NPU target id its NBG must be compiled for (Khadas' docs), and the PID the NBG header must carry.
BOARD_TARGETS = {"vim3": "VIPNANOQI_PID0X88", "vim3l": "VIPNANOQI_PID0X99"}



# torch's CUDA wheels and TensorFlow (8 GB installed) plus pip's temporary unpacking.
TOOLKIT_DISK_NEED = 11 * 1024**3


def default_home() -> Path:
    """$EDGEPAD_TOOLKIT_HOME, else $EDGEPAD_HOME/toolkit, else ~/.cache/edgepad/toolkit (CI sets EDGEPAD_HOME)."""
    if os.environ.get("EDGEPAD_TOOLKIT_HOME"):
        return Path(os.environ["EDGEPAD_TOOLKIT_HOME"]).expanduser()
    base = os.environ.get("EDGEPAD_HOME") or Path.home() / ".cache" / "edgepad"
    return Path(base).expanduser() / "toolkit"


@dataclass
class ToolkitEnv:
    home: Path

    @property
    def venv(self) -> Path:
        return self.home / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def marker(self) -> Path:
        return self.home / MARKER_NAME

    @property
    def sdk_dir(self) -> Path:
        """The unpacked vsi_sdk (x86 Vivante emulator, ovxlib headers): the exporter compiles against it."""
        return self.home / "vsi_sdk"

    def nbg_sdk_dir(self, nbg_format: int) -> Path:
        """The vsi_sdk the NBG export uses for this format: the venv's own for 2, an older release's beside it."""
        if NBG_FORMAT_SDKS[nbg_format] == ACUITYLITE_VERSION:
            return self.sdk_dir
        return self.home / f"sdk-{NBG_FORMAT_SDKS[nbg_format]}" / "vsi_sdk"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    def installed(self) -> dict | None:
        if not (self.marker.is_file() and self.python.exists()):
            return None
        try:
            return json.loads(self.marker.read_text())
        except ValueError:
            return None

    def new_log(self, what: str) -> Path:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        return self.logs_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{what}.log"


def require_toolkit(home: str | os.PathLike | None = None) -> ToolkitEnv:
    """The installed environment, or one line saying how to install it."""
    env = ToolkitEnv(Path(home) if home else default_home())
    if env.installed() is None:
        raise ToolkitError(f"the VeriSilicon toolkit environment is not installed at {env.home}: {INSTALL_HINT}")
    return env


@dataclass
class InstallResult:
    home: Path
    python_version: str
    versions: dict
    size_bytes: int
    already_installed: bool
    log: Path | None = None
    timings: dict = field(default_factory=dict)
    nbg_sdks: dict = field(default_factory=dict)


def find_base_python(explicit: str | os.PathLike | None = None) -> Path:
    """A Python acuitylite has wheels for: --python, else python3.10/3.12/3.8 on PATH, else pyenv's."""
    if explicit:
        python = Path(explicit)
        version = _python_version(python)
        if version is None:
            raise UsageError(f"--python {explicit}: not a working Python interpreter")
        if version not in SUPPORTED_PYTHONS:
            supported = sorted(SUPPORTED_PYTHONS, key=lambda v: tuple(map(int, v.split("."))))
            raise UsageError(f"--python {explicit}: is Python {version}; acuitylite {ACUITYLITE_VERSION} has wheels "
                             f"only for {', '.join(supported)}")
        return python
    for version in SUPPORTED_PYTHONS:
        found = _python_on_path(version) or _python_from_pyenv(version)
        if found:
            return found
    raise ToolkitError("no Python 3.10, 3.12 or 3.8 found (on PATH as python3.10 etc., or under pyenv): install one "
                       "(e.g. `apt-get install python3.10-venv`) or pass --python PATH")


def install_toolkit(python: str | None = None, home: str | os.PathLike | None = None, steps=None,
                    force: bool = False) -> InstallResult:
    """Create (or confirm) the toolkit venv. Idempotent: a marker file records what was installed."""
    from edgepad.progress import Steps

    steps = steps or Steps(quiet=True)
    env = ToolkitEnv(Path(home) if home else default_home())
    existing = env.installed()
    if existing and not force and existing.get("requirements") == list(TOOLKIT_REQUIREMENTS) and env.sdk_dir.is_dir():
        added = install_nbg_sdks(env, steps)
        if added:
            existing["nbg_sdks"] = nbg_sdks_state(env)
            env.marker.write_text(json.dumps(existing, indent=2) + "\n")
        return InstallResult(env.home, existing["python"], existing["versions"], directory_size(env.home), not added,
                             timings=dict(steps.timings), nbg_sdks=existing.get("nbg_sdks", {}))

    base = find_base_python(python)
    env.home.mkdir(parents=True, exist_ok=True)
    _require_disk_space(env.home, TOOLKIT_DISK_NEED)
    log = env.new_log("install")
    env.marker.unlink(missing_ok=True)  # a half-made environment must not look installed
    with steps.step(f"Creating the toolkit environment in {env.venv} (Python {_python_version(base)})"):
        shutil.rmtree(env.venv, ignore_errors=True)
        _run_logged([str(base), "-m", "venv", str(env.venv)], log, "creating the venv")
        _run_logged([str(env.python), "-m", "pip", "install", "-q", "--upgrade", "pip"], log, "upgrading pip")
    with steps.step(f"Installing {' and '.join(TOOLKIT_REQUIREMENTS)} with pip (about 8 GB with torch's CUDA wheels)"):
        _pip_install_condensed(env, log, steps)
    with steps.step("Unpacking the bundled Vivante SDK (x86 emulator, ovxlib)"):
        _unpack_vsi_sdk(env, log)
    install_nbg_sdks(env, steps, log)
    with steps.step("Checking the environment imports acuitylite"):
        report = run_worker(env, "doctor", {}, log_name="install-doctor")
    versions = report["versions"]
    python_version = _python_version(env.python) or "?"
    env.marker.write_text(json.dumps({
        "requirements": list(TOOLKIT_REQUIREMENTS), "python": python_version, "versions": versions,
        "base_python": str(base), "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "nbg_sdks": nbg_sdks_state(env),
    }, indent=2) + "\n")
    return InstallResult(env.home, python_version, versions, directory_size(env.home), False, log,
                         dict(steps.timings), nbg_sdks_state(env))


def nbg_sdks_state(env: ToolkitEnv) -> dict:
    """Per NBG format: the release whose vsi_sdk writes it, where it is unpacked, whether it is there, its size."""
    state = {}
    for nbg_format, version in NBG_FORMAT_SDKS.items():
        path = env.nbg_sdk_dir(nbg_format)
        ok = emulator_library(path).is_file()
        state[str(nbg_format)] = {"acuitylite": version, "path": str(path), "ok": ok,
                                  "size_bytes": directory_size(path) if ok else 0}
    return state


def install_nbg_sdks(env: ToolkitEnv, steps, log: Path | None = None) -> list[int]:
    """Fetch and unpack the vsi_sdk of every NBG format whose SDK is not the venv's own (only that file of the
    release's wheel: `pip download --no-deps`, then acuitylib/vsi_sdk.tar.gz). Idempotent; the formats added."""
    added = []
    for nbg_format, version in NBG_FORMAT_SDKS.items():
        target = env.nbg_sdk_dir(nbg_format)
        if version == ACUITYLITE_VERSION or emulator_library(target).is_file():
            continue
        log = log or env.new_log(f"install-sdk-{version}")
        with steps.step(f"Fetching acuitylite {version}'s vsi_sdk (writes NBG format {nbg_format}.x)"), \
                tempfile.TemporaryDirectory(prefix="edgepad-acuitylite-") as download:
            _run_logged([str(env.python), "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                         f"acuitylite=={version}", "-d", download], log, f"downloading acuitylite {version}")
            wheels = list(Path(download).glob("acuitylite-*.whl"))
            if len(wheels) != 1:
                raise ToolkitError(f"pip download acuitylite=={version} gave {len(wheels)} wheels; full log: {log}")
            with zipfile.ZipFile(wheels[0]) as wheel:
                if "acuitylib/vsi_sdk.tar.gz" not in wheel.namelist():
                    raise ToolkitError(f"{wheels[0].name} has no acuitylib/vsi_sdk.tar.gz; full log: {log}")
                wheel.extract("acuitylib/vsi_sdk.tar.gz", download)
            _unpack_archive(Path(download) / "acuitylib" / "vsi_sdk.tar.gz", target, env.home, log)
        steps.info(f"  vsi_sdk {version}: {target} ({human_size(directory_size(target))})")
        added.append(nbg_format)
    return added


def doctor(home: str | os.PathLike | None = None) -> dict:
    """Versions inside the environment, the SDK's state, and which boards it can compile for."""
    env = require_toolkit(home)
    report = run_worker(env, "doctor", {}, log_name="doctor")
    known = emulator_targets(env.sdk_dir)
    report["home"] = str(env.home)
    report["python"] = env.installed().get("python")
    report["sdk"] = {"path": str(env.sdk_dir), "ok": bool(known),
                     "emulator": str(emulator_library(env.sdk_dir)), "targets_known": len(known)}
    report["nbg_sdks"] = nbg_sdks_state(env)
    report["boards"] = {board: {"target": target, "can_compile": target in known}
                        for board, target in BOARD_TARGETS.items()}
    report["size_bytes"] = directory_size(env.home)
    return report


def emulator_library(sdk_dir: Path) -> Path:
    return sdk_dir / "prebuilt-sdk" / "x86_64_linux" / "lib" / "libEmulator.so"


def emulator_targets(sdk_dir: Path) -> set[str]:
    """The NPU configurations the bundled emulator knows. For any other target id the exporter does not fail:
    it silently compiles for a default NPU (seen: VIPNANOQI_PID0X99 gave PID 0x10000020), so we ask first."""
    library = emulator_library(sdk_dir)
    if not library.is_file():
        return set()
    pattern = rb"(?<![A-Z0-9_])([A-Z][A-Z0-9_]*_PID0X[0-9A-F]+)\x00"
    return {m.decode() for m in re.findall(pattern, library.read_bytes())}


def run_worker(env: ToolkitEnv, action: str, request: dict, log_name: str, log: Path | None = None,
               extra_env: dict | None = None) -> dict:
    """Run toolkit_worker.py inside the toolkit venv. Any failure: one line plus the path of the full log."""
    log = log or env.new_log(log_name)
    run_dir = env.home / "runs" / log.stem
    run_dir.mkdir(parents=True, exist_ok=True)
    request_path, result_path = run_dir / "request.json", run_dir / "result.json"
    request_path.write_text(json.dumps(request, indent=2, default=str))
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONNOUSERSITE="1",
                       PYTHONUNBUFFERED="1", **(extra_env or {}))
    environment.pop("PYTHONPATH", None)  # nothing of the main environment may leak into the toolkit's
    with open(log, "ab") as log_file:
        process = subprocess.run([str(env.python), str(WORKER), action, str(request_path), str(result_path)],
                                 stdout=log_file, stderr=subprocess.STDOUT, env=environment, cwd=run_dir)
    result = json.loads(result_path.read_text()) if result_path.is_file() else None
    if result is None or not result.get("ok"):
        error = (result or {}).get("error") or {
            "message": f"the toolkit process exited with status {process.returncode}"}
        raise ToolkitError(f"{error['message']} (full toolkit log: {log})")
    result["log"] = str(log)
    result["run_dir"] = str(run_dir)
    return result


def directory_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size} B"
        size /= 1024
    return f"{size:.1f} GB"


def _python_version(python: Path) -> str | None:
    try:
        out = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _python_on_path(version: str) -> Path | None:
    found = shutil.which(f"python{version}")
    if found and _python_version(Path(found)) == version:  # a pyenv shim answers "command not found" here
        return Path(found)
    return None


def _python_from_pyenv(version: str) -> Path | None:
    pyenv = shutil.which("pyenv")
    if not pyenv:
        return None
    versions = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True).stdout.split()
    for candidate in sorted((v for v in versions if v.startswith(version + ".")), reverse=True):
        prefix = subprocess.run([pyenv, "prefix", candidate], capture_output=True, text=True).stdout.strip()
        python = Path(prefix) / "bin" / "python" if prefix else None
        if python and _python_version(python) == version:
            return python
    return None


def _run_logged(command: list[str], log: Path, what: str) -> None:
    with open(log, "ab") as log_file:
        log_file.write(("$ " + " ".join(command) + "\n").encode())
        log_file.flush()
        process = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT)
    if process.returncode != 0:
        raise ToolkitError(f"{what} failed (exit {process.returncode}); full log: {log}")


def _pip_install_condensed(env: ToolkitEnv, log: Path, steps) -> None:
    """pip's full output goes to the log; the terminal sees one line per phase (resolve, download, install)."""
    command = [str(env.python), "-m", "pip", "install", "--progress-bar", "off", *TOOLKIT_REQUIREMENTS]
    with open(log, "ab") as log_file:
        log_file.write(("$ " + " ".join(command) + "\n").encode())
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in process.stdout or ():
            log_file.write(line.encode())
            if line.startswith("Installing collected packages:"):
                count = len(line.split(":", 1)[1].split(","))
                steps.info(f"  resolved; installing {count} packages (the slow part: torch and TensorFlow)")
            elif line.startswith("Successfully installed"):
                steps.info(f"  installed {len(line.split()) - 2} packages")
        process.wait()
    if process.returncode != 0:
        reason = _last_error_line(log)
        raise ToolkitError(f"pip install {' '.join(TOOLKIT_REQUIREMENTS)} failed (exit {process.returncode})"
                           f"{': ' + reason if reason else ''}; full log: {log}")


def _require_disk_space(where: Path, need: int) -> None:
    """torch's CUDA wheels and TensorFlow fill about 8 GB, plus pip's unpacking room: a disk that fills half-way
    leaves a broken venv and pip's OSError deep in a log, so say it before starting."""
    free = shutil.disk_usage(where).free
    if free < need:
        raise ToolkitError(f"{human_size(free)} free at {where}, the toolkit environment needs about "
                           f"{human_size(need)}: free disk space or set EDGEPAD_HOME to a larger disk")


def _last_error_line(log: Path) -> str:
    """pip's own reason (e.g. 'No space left on device', 'No matching distribution'), so the one line names it."""
    lines = log.read_text(errors="replace").splitlines()
    errors = [line.strip() for line in lines if line.startswith("ERROR:")]
    return errors[-1][:300] if errors else ""


def _unpack_vsi_sdk(env: ToolkitEnv, log: Path) -> None:
    locate = "import importlib.util; print(importlib.util.find_spec('acuitylib').submodule_search_locations[0])"
    out = subprocess.run([str(env.python), "-c", locate], capture_output=True, text=True)
    archive = Path(out.stdout.strip()) / "vsi_sdk.tar.gz"
    if out.returncode != 0 or not archive.is_file():
        raise ToolkitError(f"acuitylite installed without its vsi_sdk.tar.gz (looked at {archive}); full log: {log}")
    _unpack_archive(archive, env.sdk_dir, env.home, log)


def _unpack_archive(archive: Path, target: Path, home: Path, log: Path) -> None:
    """Unpack a vsi_sdk.tar.gz into target (replaced whole, never left half-made)."""
    staging = home / f".{target.parent.name}-{target.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # refuses absolute paths and links out of the folder
            tar.extractall(staging, filter="data")
        else:
            tar.extractall(staging)
    unpacked = staging / "vsi_sdk"
    if not emulator_library(unpacked).is_file():
        raise ToolkitError(f"{archive} does not contain prebuilt-sdk/x86_64_linux/lib/libEmulator.so; full log: {log}")
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    unpacked.rename(target)
    shutil.rmtree(staging, ignore_errors=True)
