"""Times `edgepad deploy` against `scp -r` of the same bundle, over a real OpenSSH server on loopback.

usage: python benchmarks/bench_deploy.py [--repeat N] [--bundle DIR] [--remote-python PY]

In one run: a full deploy into an empty remote dir, a redeploy of the same bundle (files reused on the board),
each with and without the on-board health check, and the baseline `scp -r BUNDLE` (no verification, no atomic
switch). Prints median seconds and each figure's ratio to scp. Loopback has no network latency, so the ratios
show edgepad's own overhead (hashing, board-side steps, Python start-up on the "board"), not a slow link; the
last line shows what one remote command costs on this host (a login shell that runs pyenv init adds ~0.3 s).
"""
from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the loopback sshd and board Python helpers live with the tests


def build_bundle(out: Path) -> Path:
    from edgepad.convert.mtcnn_models import available_targets, build_detector_models
    from edgepad.convert.pipeline import ConvertOptions, convert_model
    from edgepad.deploy.bundle import BundleOptions
    from edgepad.deploy.bundle import build_bundle as build

    classifier = out.parent / "pad_out"
    convert_model(ConvertOptions(model=ROOT / "tests/fixtures/legacy_h5/pad_mobilenet.h5", out=classifier,
                                 targets=available_targets()))
    detector = build_detector_models(out.parent / "detector")
    build(BundleOptions(out, classifier, detector, sample_images=ROOT / "tests/fixtures/faces"))
    return out


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bundle", type=Path, help="an existing bundle (default: build one from the test fixtures)")
    parser.add_argument("--remote-python", help="board Python (default: the tests' Python 3.8 board environment)")
    args = parser.parse_args()

    from edgepad.deploy.pipeline import BoardOptions, DeployOptions, deploy_host
    from edgepad.deploy.ssh import HostSpec, SshOptions

    from support import loopback_sshd
    from support.board_env import ensure_board_python

    work = Path(tempfile.mkdtemp(prefix="edgepad-bench-deploy-"))
    server = loopback_sshd.start(work / "sshd")
    try:
        bundle = args.bundle or build_bundle(work / "bundle" / "pad_bundle")
        python = args.remote_python or str(ensure_board_python())
        known_hosts = work / "known_hosts"
        known_hosts.write_text(server.known_hosts_line())
        spec = HostSpec("127.0.0.1", server.port, "root")
        size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
        files = sum(1 for p in bundle.rglob("*") if p.is_file())

        def deploy(remote: Path, health: bool):
            options = BoardOptions(SshOptions(server.client_key, known_hosts), str(remote), python)
            return deploy_host(spec, DeployOptions(bundle, options, health_check=health))

        def scp(remote: Path):
            remote.mkdir(parents=True)
            subprocess.run(["scp", "-q", "-r", "-i", str(server.client_key), "-P", str(server.port),
                            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
                            "-o", "BatchMode=yes", str(bundle), f"root@127.0.0.1:{remote}/"], check=True)

        figures: dict[str, list[float]] = {}
        sent: dict[str, int] = {}
        for i in range(args.repeat):
            for health in (True, False):
                label = "with health check" if health else "no health check"
                remote = work / f"board-{i}-{int(health)}"
                first = deploy(remote, health)
                figures.setdefault(f"full deploy, {label}", []).append(first.seconds)
                again = deploy(remote, health)
                figures.setdefault(f"redeploy, {label}", []).append(again.seconds)
                sent[f"full deploy, {label}"] = first.bytes_uploaded
                sent[f"redeploy, {label}"] = again.bytes_uploaded
            figures.setdefault("scp -r (baseline)", []).append(timed(functools.partial(scp, work / f"scp-{i}")))
            sent["scp -r (baseline)"] = size
        from edgepad.deploy.ssh import connect

        with connect(spec, SshOptions(server.client_key, known_hosts)) as connection:
            round_trips = [timed(lambda: connection.run(["true"])) for _ in range(5)]
        baseline = statistics.median(figures["scp -r (baseline)"])
        print(f"bundle: {files} files, {size / 1e6:.2f} MB; loopback OpenSSH; board Python {python}; "
              f"median of {args.repeat} runs")
        print(f"{'':34}{'seconds':>9}{'x scp':>8}{'MB sent':>10}")
        for label, values in figures.items():
            seconds = statistics.median(values)
            print(f"{label:34}{seconds:>9.2f}{seconds / baseline:>8.2f}{sent[label] / 1e6:>10.2f}")
        # every board-side step is one remote command; its fixed cost is the login shell's start-up on that host
        print(f"one remote command (`true`) round trip: {statistics.median(round_trips):.3f} s")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
