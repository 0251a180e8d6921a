"""The NBG header's format word (bytes 4-7): read, recorded, and checked against --nbg-format.

Headers as measured (see the README's table): Khadas' VIM3 NBG in KSNN's examples starts
`VPMN 0f 00 01 00 88 00 00 00 Model_NCHW`, acuitylite 6.45.0's SDK writes `20 00 01 00`, 6.57.1's `05 00 02 00`."""
from __future__ import annotations

import pytest

KHADAS_VIM3 = b"VPMN" + bytes.fromhex("0f000100" "88000000") + b"Model_NCHW\0\0"
ACUITYLITE_6_57 = b"VPMN" + bytes.fromhex("05000200" "88000000") + bytes(12)


def test_the_format_word_is_read_like_khadas_nbgs(tmp_path):
    from edgepad.convert.vim3.nbg_header import check_nbg_header

    nbg = tmp_path / "network_binary.nb"
    nbg.write_bytes(KHADAS_VIM3)
    header = check_nbg_header(nbg, 0x88, "VIPNANOQI_PID0X88", expected_major=1)
    assert header.to_json() == {"magic": "VPMN", "pid": "0x88", "format": "0x0001000f", "format_major": 1}


def test_a_binary_in_another_format_than_asked_is_one_line(tmp_path):
    from edgepad.convert.vim3.nbg_header import check_nbg_header
    from edgepad.errors import ExportError

    nbg = tmp_path / "network_binary.nb"
    nbg.write_bytes(ACUITYLITE_6_57)
    with pytest.raises(ExportError) as error:
        check_nbg_header(nbg, 0x88, "VIPNANOQI_PID0X88", expected_major=1)
    message = str(error.value)
    assert "0x00020005" in message and "--nbg-format 1" in message and "edgepad toolkit install" in message
    assert "\n" not in message
    assert check_nbg_header(nbg, 0x88, "VIPNANOQI_PID0X88", expected_major=2).format_major == 2


def test_format_1_is_the_default_and_uses_6_45_0s_sdk_beside_the_toolkit(tmp_path):
    from edgepad.convert.pipeline import ConvertOptions
    from edgepad.convert.vim3.toolkit_env import NBG_FORMAT_SDKS, ToolkitEnv

    assert ConvertOptions(model=tmp_path / "m.h5", out=tmp_path / "o").nbg_format == 1
    env = ToolkitEnv(tmp_path)
    assert NBG_FORMAT_SDKS[1] == "6.45.0"
    assert env.nbg_sdk_dir(1) == tmp_path / "sdk-6.45.0" / "vsi_sdk"
    assert env.nbg_sdk_dir(2) == env.sdk_dir
