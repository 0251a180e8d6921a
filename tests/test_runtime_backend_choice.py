"""`edgepad run` without --backend: models with NPU files run on the NPU, the others on the CPU with one note.

The NPU files are placeholders beside a real convert output; KSNN is the board suite's stand-in
(EDGEPAD_KSNN_API=ksnn_standin), which computes with the folder's float model, so the faces can be compared.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner

STANDIN_DIR = Path(__file__).resolve().parent / "runtime_board"


def with_npu_classifier(bundle: Path, out: Path) -> Path:
    import sys

    sys.path.insert(0, str(STANDIN_DIR))
    import ksnn_standin

    shutil.copytree(bundle, out)
    folder = out / "models" / "classifier"
    (folder / "vim3").mkdir()
    (folder / "vim3" / "network_binary.nb").write_bytes(b"VPMN" + bytes(60))
    card = json.loads((folder / "edgepad.json").read_text())
    shape = card["input"]
    ksnn_standin.write_placeholder_library(folder / "vim3" / "libnn_classifier.so", "../model.onnx",
                                           (1, shape["channels"], shape["height"], shape["width"]))
    card["targets"]["vim3"] = {"nb": "vim3/network_binary.nb", "library": "vim3/libnn_classifier.so",
                               "platform": "ONNX"}
    (folder / "edgepad.json").write_text(json.dumps(card))
    return out


def run_json(*args):
    from edgepad.cli import cli

    result = CliRunner().invoke(cli, ["run", *[str(a) for a in args], "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def test_edgepad_run_picks_the_npu_where_the_model_has_npu_files(runtime_bundle, faces_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPAD_KSNN_API", "ksnn_standin")
    monkeypatch.syspath_prepend(str(STANDIN_DIR))
    bundle = with_npu_classifier(runtime_bundle, tmp_path / "bundle")
    image = faces_dir / "t1.jpg"

    chosen, notes = run_json(image, "--bundle", bundle)
    assert chosen["backends"] == {"pnet": "onnxruntime", "rnet": "onnxruntime", "onet": "onnxruntime",
                                  "classifier": "ksnn"}
    assert notes.count("no NPU files") == 1 and "pnet, rnet, onet run on onnxruntime" in notes

    forced, forced_notes = run_json(image, "--bundle", bundle, "--backend", "onnxruntime")
    assert set(forced["backends"].values()) == {"onnxruntime"} and "no NPU files" not in forced_notes
    assert len(chosen["faces"]) == len(forced["faces"]) == 6
    for on_npu, on_cpu in zip(chosen["faces"], forced["faces"], strict=True):
        np.testing.assert_allclose(on_npu["box"], on_cpu["box"], atol=0.11)
        assert on_npu["is_live"] == on_cpu["is_live"]
