"""Fixtures for the deploy tests: a real OpenSSH server on loopback, converted models, a bundle, fresh boards.

The "board" is this machine reached over SSH as root; its remote dir is a temporary folder, and its Python is
the board_python environment (Python 3.8 with only numpy, OpenCV 4 and onnxruntime).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import loopback_sshd

LEGACY_H5 = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_h5"


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    if not loopback_sshd.available():
        pytest.fail("OpenSSH server missing: run `bash .ci/install.sh` (apt-get install openssh-server)")
    server = loopback_sshd.start(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def classifier_out(tmp_path_factory) -> Path:
    """pad_mobilenet.h5 (written by TF 2.4.4) through edgepad's converter: ONNX and Caffe."""
    from edgepad.convert.pipeline import ConvertOptions, convert_model

    out = tmp_path_factory.mktemp("convert") / "pad_out"
    convert_model(ConvertOptions(model=LEGACY_H5 / "pad_mobilenet.h5", out=out, targets=("onnx", "caffe")))
    return out


@pytest.fixture(scope="session")
def detector_out(tmp_path_factory) -> Path:
    from edgepad.convert.mtcnn_models import build_detector_models

    return build_detector_models(tmp_path_factory.mktemp("mtcnn") / "detector")


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, classifier_out, detector_out, faces_dir) -> Path:
    from edgepad.deploy.bundle import BundleOptions, build_bundle

    out = tmp_path_factory.mktemp("bundles") / "pad_bundle"
    build_bundle(BundleOptions(out, classifier_out, detector_out, sample_images=faces_dir))
    return out


@pytest.fixture(scope="session")
def small_bundle_dir(tmp_path_factory, classifier_out) -> Path:
    """The classifier alone, without sample images: other reference files than bundle_dir, same model."""
    from edgepad.deploy.bundle import BundleOptions, build_bundle

    out = tmp_path_factory.mktemp("bundles") / "small_bundle"
    build_bundle(BundleOptions(out, classifier_out))
    return out


def copy_bundle(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


def reseal(bundle: Path) -> None:
    """Rewrite manifest.json after a test changed files, as a bundle built that way would carry."""
    from edgepad.deploy import manifest as manifest_io

    manifest = manifest_io.load(bundle)
    manifest_io.seal(bundle, manifest.versions, manifest.models)


@dataclass
class LoopbackBoard:
    """One board: the loopback sshd, a fresh remote dir, a known_hosts file that knows the server's key."""

    sshd: object
    remote_dir: Path
    known_hosts: Path
    python: Path

    @property
    def spec(self):
        from edgepad.deploy.ssh import HostSpec

        return HostSpec("127.0.0.1", self.sshd.port, "root")

    def board_options(self, trust_new_host: bool = False, remote_dir: str | None = None):
        from edgepad.deploy.pipeline import BoardOptions
        from edgepad.deploy.ssh import SshOptions

        ssh = SshOptions(self.sshd.client_key, self.known_hosts, trust_new_host)
        return BoardOptions(ssh, remote_dir or str(self.remote_dir), str(self.python))

    def deploy(self, bundle: Path, observer=None, **options):
        from edgepad.deploy.pipeline import DeployOptions, deploy_host

        board = self.board_options(options.pop("trust_new_host", False), options.pop("remote_dir", None))
        return deploy_host(self.spec, DeployOptions(bundle, board, **options), observer)

    def cli_args(self) -> list[str]:
        return ["--host", f"root@127.0.0.1:{self.sshd.port}", "--identity", str(self.sshd.client_key),
                "--known-hosts", str(self.known_hosts), "--remote-dir", str(self.remote_dir),
                "--remote-python", str(self.python)]

    def current(self) -> str | None:
        link = self.remote_dir / "current"
        return Path(link.readlink()).name if link.is_symlink() else None

    def complete_releases(self) -> list[str]:
        folder = self.remote_dir / "releases"
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


@pytest.fixture
def board(sshd, board_python, tmp_path) -> LoopbackBoard:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line())
    return LoopbackBoard(sshd, tmp_path / "board", known_hosts, board_python)
