"""`edgepad status` reads the board's NPU driver (galcore) version: sysfs when the module exposes it, else the
kernel log, where Khadas' images print it (`dmesg | grep -i galcore`). The board's dmesg is a stand-in here."""
from __future__ import annotations

import os


def test_the_driver_version_comes_from_the_kernel_log(tmp_path, monkeypatch):
    from edgepad.deploy.board_ops import galcore_version_from_dmesg

    dmesg = tmp_path / "dmesg"  # stand-in for the board's dmesg
    dmesg.write_text("#!/bin/sh\necho '[    4.2] usb 1-1: new device'\n"
                     "echo '[    5.1] galcore: Galcore version 6.4.4.3.310723AAA'\n")
    dmesg.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert galcore_version_from_dmesg() == "6.4.4.3.310723AAA"

    dmesg.write_text("#!/bin/sh\necho '[    4.2] usb 1-1: new device'\n")
    assert galcore_version_from_dmesg() is None
