"""`edgepad status` and deploy read the board's NPU driver (galcore) version: sysfs when the module exposes it, else
`modinfo galcore`, else the kernel log, where Khadas' images print it (`dmesg | grep -i galcore`), every read bounded;
and deploy/npu_driver.py judges it against each NBG's format. The board's dmesg and modinfo are stand-ins here."""
from __future__ import annotations

import os

import pytest


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


def test_an_endless_kernel_log_is_read_only_up_to_the_limit(tmp_path, monkeypatch):
    """The board is not trusted: a dmesg that never stops is cut at COMMAND_OUTPUT_LIMIT and killed."""
    from edgepad.deploy import board_ops

    dmesg = tmp_path / "dmesg"  # stand-in for a board whose kernel log floods
    dmesg.write_text("#!/bin/sh\nyes '[    4.2] noise'\n")
    dmesg.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(board_ops, "COMMAND_OUTPUT_LIMIT", 64 * 1024)
    assert len(board_ops.bounded_output(["dmesg"], limit=board_ops.COMMAND_OUTPUT_LIMIT)) == 64 * 1024
    assert board_ops.galcore_version_from_dmesg() is None


def test_modinfo_gives_the_version_of_the_module_on_disk(tmp_path, monkeypatch):
    from edgepad.deploy.board_ops import galcore_version

    modinfo = tmp_path / "modinfo"  # stand-in for kmod's modinfo on a Khadas image
    modinfo.write_text("#!/bin/sh\necho 'filename: /lib/modules/4.9/galcore.ko'\necho 'version:        6.4.6.2.5'\n")
    modinfo.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert galcore_version() == ("6.4.6.2.5", "modinfo galcore")


@pytest.mark.parametrize("driver, nbg_format, verdict", [
    ("6.4.8.7.310723AAA", "0x0001000f", "compatible"),  # Khadas' KSNN 1.3/1.4 NBGs for that driver
    ("6.4.6.2", "0x0001000e", "compatible"),  # KSNN 1.2's
    ("6.4.8.7", "0x00010020", "incompatible"),  # acuitylite 6.27-6.45's vsi_sdk: newer than that driver reads
    ("6.4.8.7", "0x00020005", "incompatible"),  # acuitylite 6.48-6.57.1's
    ("6.4.4.3.310723AAA", "0x0001000f", "incompatible"),  # older than 6.4.6.2, which reads up to 0x0001000e
    ("6.4.3.p0.286725", "0x0001000e", "unknown"),  # older driver, no newer format than 6.4.6.2's: no document
    ("6.4.8.7", "0x0001000c", "unknown"),  # an older format on a newer driver: not documented either way
    ("6.4.15.9", "0x00020005", "unknown"),  # a driver newer than any documented
    (None, "0x00010020", "unknown"),  # no galcore on the board
    ("6.4.8.7\x1b[2J", "0x0001000f", "unknown"),  # not a version: the board is not trusted
])
def test_the_documented_pairs_decide_and_the_rest_is_unknown(driver, nbg_format, verdict):
    from edgepad.deploy.npu_driver import check_nbg

    check = check_nbg("classifier", driver, nbg_format, "acuitylite 6.57.1")
    assert check.verdict == verdict, check.reason
    if verdict == "incompatible":
        assert nbg_format in check.reason and driver in check.reason


def test_every_nbg_of_a_card_is_checked_one_per_pnet_size():
    from edgepad.deploy.npu_driver import check_release
    from edgepad.runtime.card import ModelCard

    def card(vim3):
        return ModelCard.from_dict({"name": "m", "task": "classify", "input": {"height": 12, "width": 12},
                                    "targets": {"vim3": vim3} if vim3 else {}})

    cards = {"pnet": card({"toolkit": "acuitylite", "toolkit_version": "6.57.1",
                           "sizes": {"12x12": {"nbg_format": "0x0001000f"}, "24x24": {"nbg_format": "0x00010020"}}}),
             "onet": card({"toolkit": "khadas-sdk", "nbg_format": "0x0001000f"}), "cpu_only": card(None)}
    result = check_release(cards, "6.4.8.7", "modinfo galcore")
    assert [(c.model, c.verdict) for c in result.checks] == [
        ("onet", "compatible"), ("pnet 12x12", "compatible"), ("pnet 24x24", "incompatible")]
    assert result.verdict == "incompatible" and "pnet 24x24" in result.refusal("vim3.local")
    assert result.refusal("vim3.local").count("\n") == 0
