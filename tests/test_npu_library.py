"""edgepad's NPU library (libnn_<case>.so from the toolkit's ovxlib case) run in VeriSilicon's VIM3 emulator.

The PAD classifier and MTCNN's RNet and ONet are converted once per session with `--to onnx,vim3` (acuitylite in
its own environment, see `edgepad toolkit`); each conversion builds the library and runs it in the emulator. The
tests then run those libraries through the runtime's `ksnn` backend (edgepad's KSNN-compatible loader) against
onnxruntime's float outputs, and the whole detect -> align -> classify pipeline against the same pipeline on
onnxruntime. The emulator takes seconds per model load: the tests are few and share the converted folders.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgepad.convert.parity import (
    QUANTIZED_BOX_MIN_IOU,
    QUANTIZED_LANDMARK_ATOL_PX,
    QUANTIZED_MIN_COSINE,
    QUANTIZED_SCORE_ATOL,
    compare_outputs,
)
from edgepad.errors import ToolkitError
from edgepad.runtime.card import ModelCard

from support.npu_models import GATES
from support.paths import FACES

pytestmark = pytest.mark.toolkit
ELF_MACHINE = {62: "x86-64", 183: "aarch64"}


@pytest.fixture(scope="session")
def npu_models(toolkit, faces_dir, tmp_path_factory) -> dict:
    """classifier, rnet, onet -> the folder `--to onnx,vim3` wrote (NBG, case, libnn_<case>.so, vim3_emulated),
    each converted when first asked for and cached (tests/support/npu_models.py); classifier_int16 where asked."""
    from support.npu_models import converted_npu_models

    return converted_npu_models(faces_dir, tmp_path_factory.mktemp("npu_models"))


def elf_machine(path: Path) -> str:
    data = path.read_bytes()[:20]
    assert data[:4] == b"\x7fELF", path
    return ELF_MACHINE.get(int.from_bytes(data[18:20], "little"), "other")


def face_inputs(folder: Path, size: int, mean: float, std: float, count: int = 6) -> np.ndarray:
    """Aligned face crops (what RNet, ONet and the classifier see in the pipeline), normalised as the cards say."""
    paths = sorted(folder.glob("*.png"))
    images = []
    for path in paths[::max(1, len(paths) // count)][:count]:
        rgb = cv2.cvtColor(cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), (size, size)), cv2.COLOR_BGR2RGB)
        images.append((rgb.astype(np.float32) - mean) / std)
    return np.stack(images)


def test_convert_builds_the_library_and_reports_it_in_the_emulator(npu_models):
    for name, result in npu_models.items():
        vim3 = result.card.targets.vim3
        # NBG format 1.x by default, as Khadas' VIM3 NBGs (0x0001000F): `xx 00 01 00` after the magic
        header = (result.out / vim3.nbg).read_bytes()[:12]
        assert header[:4] == b"VPMN" and header[5:8] == b"\x00\x01\x00", header
        assert vim3.nbg_format == f"0x{int.from_bytes(header[4:8], 'little'):08x}"
        assert json.loads((result.out / "report.json").read_text())["vim3"]["nbg"]["format"] == vim3.nbg_format
        # how a KSNN script calls this model: pixels in (mean/std null: the graph normalises)
        assert vim3.ksnn.to_dict() == {"platform": "ONNX", "reorder": "2 1 0", "channel_order": "RGB",
                                       "layout": "chw", "mean": None, "std": None}
        entry = vim3.to_dict()["npu_library"]
        library = result.out / entry["library"]
        assert elf_machine(library) == "x86-64"
        for source in entry["sources"]:  # what the board builds from, in the output folder
            assert (result.out / source).is_file(), source
        emulated = json.loads((result.out / "report.json").read_text())["vim3_emulated"]
        assert emulated["passed"], (name, emulated["diagnosis"])
        # the model's own gate (the shipped pad_mobilenet's uint8 sits near 0.98: measured 0.9785 for the library)
        assert emulated["vs_float"]["cosine"] >= GATES.get(name, {}).get("min_cosine", QUANTIZED_MIN_COSINE), name
        assert emulated["input_tensor"]["identical_to_simulation"], name  # pixels in: the same input tensor
        assert emulated["vs_simulation"]["cosine"] >= 0.99, (name, emulated["diagnosis"])
        assert emulated["inputs"] >= 3 and "speed" not in json.dumps(emulated).replace("not a speed figure", "")
        estimate = emulated["estimated_board_time"]  # the toolkit's performance model, marked as an estimate
        assert estimate["estimate"] is True and "not a measurement" in estimate["note"]
        assert estimate["ms_per_inference"] > 0 and len(estimate["operations"]) >= 3
        assert sum(o["cycles"] for o in estimate["operations"]) == estimate["total_cycles"]


def test_ksnn_backend_runs_the_libraries_like_onnxruntime(npu_models, faces_dir):
    """The runtime's NPU backend (KSNN's calls over the library, no ksnn package here) against float onnxruntime."""
    from edgepad.runtime.backends import load_model

    from support.calibration_faces import calibration_faces_dir

    for name, result in npu_models.items():
        card = result.card.to_dict()
        size = card["input"]["height"]
        inputs = face_inputs(calibration_faces_dir(faces_dir), size, card["preprocess"]["mean"][0],
                             card["preprocess"]["std"][0])
        npu = load_model(result.out, "ksnn")
        assert type(npu).__name__ == "KsnnModel"
        float_outputs = load_model(result.out, "onnxruntime").run(inputs)
        npu_outputs = npu.run(inputs)
        assert list(npu_outputs) == list(float_outputs)
        parity = compare_outputs({k: list(v) for k, v in float_outputs.items()},
                                 {k: list(v) for k, v in npu_outputs.items()}, reference_name="onnxruntime",
                                 candidate_name=f"{name} NPU library", atol=None, min_cosine=QUANTIZED_MIN_COSINE)
        parity.raise_if_failed(name)


def test_the_ksnn_standin_runs_the_library_as_khadas_ksnn(npu_models, faces_dir):
    """KSNN 1.4's own calls (the stand-in: same ctypes types and order, checked against the real wheel's in
    test_ksnn_standin.py) on edgepad's library, with the card's ksnn entry: the numbers edgepad's loader gets.
    Khadas' real KSNN 1.4 was run the same way by hand (see the closing note of issue 18)."""
    import ctypes
    import sys

    from edgepad.runtime.backends import load_model
    from edgepad.runtime.backends.ksnn_backend import KsnnModel

    from support.calibration_faces import calibration_faces_dir

    sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime_board"))
    import ksnn_standin

    result = npu_models["classifier"]
    card = result.card.to_dict()
    inputs = face_inputs(calibration_faces_dir(faces_dir), card["input"]["height"], card["preprocess"]["mean"][0],
                         card["preprocess"]["std"][0])
    ksnn_standin.StandInKSNN.library_calls.clear()
    library = result.out / "vim3" / f"libnn_{card['targets']['vim3']['npu_library']['case']}.so"
    assert isinstance(ksnn_standin.load_library(str(library)), ctypes.CDLL)  # the real library, not the stand-in's
    through_standin = KsnnModel(str(result.out), api=ksnn_standin).run(inputs)
    through_loader = load_model(result.out, "ksnn").run(inputs)
    calls = [c[0] for c in ksnn_standin.StandInKSNN.library_calls]
    setter = {"uint8": "NPU_SetInput_U8", "int8": "NPU_SetInput_I8", "int16": "NPU_SetInput_I16",
              "float16": "NPU_SetInput_F16"}[card["targets"]["vim3"]["input"]["dtype"]]
    assert calls[:5] == ["NPU_CreateNeuralNetwork", "NPU_GetInputTensor", setter, "NPU_ProcessGraph",
                         "NPU_GetOutputTensor"]
    for name in through_loader:
        np.testing.assert_array_equal(through_standin[name], through_loader[name])
    float_outputs = load_model(result.out, "onnxruntime").run(inputs)
    compare_outputs({k: list(v) for k, v in float_outputs.items()}, {k: list(v) for k, v in through_standin.items()},
                    reference_name="onnxruntime", candidate_name="KSNN stand-in", atol=None,
                    min_cosine=QUANTIZED_MIN_COSINE).raise_if_failed("classifier")


def test_npu_pipeline_finds_the_same_faces_and_scores(npu_models):
    """detect -> align -> classify with RNet, ONet and the classifier on the NPU library, PNet on onnxruntime
    (the NPU needs one binary per pyramid size), against the whole pipeline on onnxruntime.

    The live score is judged on the crop the NPU pipeline aligned: the fixture classifier is untrained and moves
    by more than its quantization error when the alignment moves by one pixel (ONet's landmarks on the NPU are
    judged by themselves, in pixels)."""
    from edgepad.convert.mtcnn_models import detector_models
    from edgepad.runtime.align import align_face
    from edgepad.runtime.backends import load_model
    from edgepad.runtime.boxes import iou_matrix
    from edgepad.runtime.classifier import LiveClassifier
    from edgepad.runtime.detector import MtcnnDetector
    from edgepad.runtime.pipeline import FacePipeline

    detector_dir = detector_models()
    pnet = load_model(detector_dir / "pnet", "onnxruntime")
    float_classifier = LiveClassifier(load_model(npu_models["classifier"].out, "onnxruntime"))
    reference = FacePipeline(
        MtcnnDetector(pnet, load_model(detector_dir / "rnet", "onnxruntime"),
                      load_model(detector_dir / "onet", "onnxruntime")),
        float_classifier)
    on_npu = FacePipeline(
        MtcnnDetector(pnet, load_model(npu_models["rnet"].out, "ksnn"), load_model(npu_models["onet"].out, "ksnn")),
        LiveClassifier(load_model(npu_models["classifier"].out, "ksnn")))
    image = cv2.imread(str(FACES / "astronaut.png"), cv2.IMREAD_COLOR)
    expected, actual = reference.process(image).faces, on_npu.process(image).faces
    assert len(expected) >= 1
    assert len(actual) == len(expected)
    overlaps = iou_matrix(np.array([f.box for f in expected]), np.array([f.box for f in actual]))
    for face, row in zip(expected, overlaps, strict=True):
        match = actual[int(row.argmax())]
        assert row.max() >= QUANTIZED_BOX_MIN_IOU
        assert np.abs(np.asarray(face.landmarks) - np.asarray(match.landmarks)).max() <= QUANTIZED_LANDMARK_ATOL_PX
        crop = align_face(image, match.landmarks, float_classifier.align_size)
        float_live = float(float_classifier.live_probabilities([crop])[0])
        assert match.live is not None and abs(match.live - float_live) <= QUANTIZED_SCORE_ATOL


def test_board_script_compiles_the_same_sources_for_aarch64(npu_models, toolkit, tmp_path):
    """The board builds with build_board.sh; here Debian's cross compiler makes its objects (linking needs the
    board's ovxlib, which only the board has). The ovxlib headers are the toolkit SDK's."""
    compiler = shutil.which("aarch64-linux-gnu-gcc")
    assert compiler, "install gcc-aarch64-linux-gnu and libc6-dev-arm64-cross (.ci/install.sh does)"
    result = npu_models["rnet"]
    board = tmp_path / "vim3"
    shutil.copytree(result.out / "vim3", board)
    objects = tmp_path / "objects"
    env = dict(os.environ, CC=compiler, BUILD_DIR=str(objects),
               OVXLIB_INCLUDE=str(toolkit.sdk_dir / "prebuilt-sdk" / "x86_64_linux" / "include"))
    done = subprocess.run(["bash", str(board / "build_board.sh"), "--objects-only"], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    built = sorted(p.name for p in objects.glob("*.o"))
    case = result.card.to_dict()["targets"]["vim3"]["npu_library"]["case"]
    assert built == sorted(["edgepad_npu.o", f"vnn_{case}.o", f"vnn_{case}_tensor.o"])
    assert {elf_machine(p) for p in objects.glob("*.o")} == {"aarch64"}

    # linked without the board's ovxlib (left undefined), the aarch64 library is refused here in one line
    from edgepad.runtime.npu_loader import NpuError, NpuLibrary

    library = tmp_path / f"libnn_{case}.so"
    subprocess.run([compiler, "-shared", "-o", str(library), *map(str, objects.glob("*.o"))], check=True)
    with pytest.raises(NpuError, match="built for aarch64, this machine is x86-64.*build_board.sh"):
        NpuLibrary(str(library))


def test_a_library_built_for_another_npu_is_refused(npu_models, toolkit, tmp_path):
    from edgepad.convert.vim3.npu_lib import build_host_library
    from edgepad.runtime.npu_loader import KSNN, NpuError

    result = npu_models["classifier"]
    case = result.card.to_dict()["targets"]["vim3"]["npu_library"]["case"]
    other = tmp_path / "vim3"
    shutil.copytree(result.out / "vim3", other)
    build = build_host_library(other, case, "VIPNANOQI_PID0X99", 0x99, toolkit.sdk_dir, tmp_path / "build.log")
    ksnn = KSNN("VIM3")
    with pytest.raises(NpuError) as error:
        ksnn.nn_init(library=str(build.library), model=str(result.out / "vim3" / "network_binary.nb"))
    assert "built for NPU pid 0x99" in str(error.value) and "pid 0x88" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_card_that_does_not_match_the_library_is_refused(npu_models, tmp_path):
    from edgepad.runtime.backends import BackendError, load_model

    folder = tmp_path / "classifier"
    shutil.copytree(npu_models["classifier"].out, folder)
    card = json.loads((folder / "edgepad.json").read_text())
    card["targets"]["vim3"]["input"]["scale"] *= 2  # a card from another quantization of the model
    (folder / "edgepad.json").write_text(json.dumps(card))
    with pytest.raises(BackendError) as error:
        load_model(folder, "ksnn")
    message = str(error.value)
    assert "model card input 0" in message and "scale" in message and "convert again" in message
    assert "\n" not in message


def test_a_missing_emulator_sdk_is_one_line(npu_models, toolkit, tmp_path):
    from edgepad.convert.vim3.npu_lib import build_host_library
    from edgepad.runtime.npu_loader import NpuError, NpuLibrary

    result = npu_models["onet"]
    case = result.card.to_dict()["targets"]["vim3"]["npu_library"]["case"]
    moved = tmp_path / "vim3"
    shutil.copytree(result.out / "vim3", moved)
    with pytest.raises(ToolkitError, match="Vivante emulator SDK is missing.*edgepad toolkit install"):
        build_host_library(moved, case, "VIPNANOQI_PID0X88", 0x88, tmp_path / "no_sdk", tmp_path / "build.log")

    # a library whose SDK went away after the build (the toolkit removed, or reinstalled elsewhere)
    sdk = tmp_path / "sdk"
    sdk.symlink_to(toolkit.sdk_dir, target_is_directory=True)
    build = build_host_library(moved, case, "VIPNANOQI_PID0X88", 0x88, sdk, tmp_path / "build.log")
    sdk.unlink()
    with pytest.raises(NpuError) as error:
        NpuLibrary(str(build.library))
    message = str(error.value)
    assert "emulator SDK it was built against is missing" in message and "edgepad toolkit install" in message
    assert "\n" not in message


def test_emulated_section_names_what_was_measured_to_differ():
    """A library that agrees with a poor simulation is blamed on the quantization; one that disagrees with the
    simulation names what was measured: input values its input tensor cannot hold, or identical inputs."""
    from edgepad.convert.vim3.npu_lib.emulated import emulated_section

    rng = np.random.default_rng(0)
    float_out = {"prob": [rng.uniform(0, 1, (1, 8)).astype(np.float32) for _ in range(4)]}
    near = {"prob": [v + 0.001 for v in float_out["prob"]]}
    other = [np.stack([rng.uniform(0, 1, (1, 8)).astype(np.float32) for _ in range(4)])]
    card = ModelCard.from_dict({"input": {"height": 4, "width": 4}, "targets": {"vim3": {
        "input": {"dtype": "uint8", "scale": 1.0, "zero_point": 0},
        "outputs": [{"dtype": "uint8", "scale": 1 / 255, "zero_point": 0}]}}})
    pixels = [rng.integers(0, 256, (1, 3, 4, 4)).astype(np.float32) for _ in range(4)]

    good = emulated_section([np.stack(near["prob"])], float_out, near, "acuitylite", QUANTIZED_MIN_COSINE, ["a"] * 4,
                            card=card, inputs=pixels)
    assert good["passed"] and good["diagnosis"].startswith("the library computes what the toolkit simulated")
    assert good["input_tensor"]["identical_to_simulation"] and good["vs_simulation"]["max_abs_steps"][0] < 0.3
    same_inputs = emulated_section(other, float_out, near, "acuitylite", QUANTIZED_MIN_COSINE, ["a"] * 4, card=card,
                                   inputs=pixels)
    assert not same_inputs["passed"] and same_inputs["diagnosis"].startswith("inside the compiled graph: the input "
                                                                             "tensors were measured identical")
    assert "the quantization itself is not the cause" not in same_inputs["diagnosis"]
    normalised = [(x - 127.5) / 127.5 for x in pixels]  # values between the uint8 steps: not what the NPU receives
    off_grid = emulated_section(other, float_out, near, "acuitylite", QUANTIZED_MIN_COSINE, ["a"] * 4, card=card,
                                inputs=normalised)
    assert off_grid["diagnosis"].startswith("the input tensor: ")
    assert not off_grid["input_tensor"]["identical_to_simulation"]
    bad_quantization = emulated_section(other, float_out, {"prob": list(other[0])}, "acuitylite",
                                        QUANTIZED_MIN_COSINE, ["a"] * 4)
    assert not bad_quantization["passed"] and bad_quantization["diagnosis"].startswith("quantization")


def test_loader_runs_on_the_board_python(board_python):
    """runtime/npu_loader.py is copied to the board: Python 3.8, numpy and ctypes only."""
    code = ("import runtime.npu_loader as m; k = m.KSNN('VIM3'); "
            "assert callable(k.nn_init) and callable(k.nn_inference) and m.output_format.OUT_FORMAT_FLOAT32 == 3")
    done = subprocess.run([str(board_python), "-c", code], cwd=str(Path(__file__).resolve().parents[1]),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


BOARD_PIXELS_SCRIPT = """
import json, sys
import cv2, numpy as np
from runtime import npu_loader
from runtime.card import ModelCard
from runtime.preprocess import pixels
out, sources, result = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
card = ModelCard.load(out)
entry = card.targets.vim3
assert entry.ksnn.mean is None and entry.npu_input.values == "pixels"
ksnn = npu_loader.KSNN("VIM3")
ksnn.nn_init(library=out + "/" + entry.npu_library.library, model=out + "/" + entry.nbg, level=0)
ksnn.check_card([entry.input], entry.outputs)
h, w = card.input.height, card.input.width
outputs, inputs = [], []
for path in sources:
    image = pixels(cv2.imread(path, cv2.IMREAD_COLOR), card.preprocess, h, w)  # decoded bytes, resized, RGB
    assert image.min() >= 0 and image.max() <= 255 and np.array_equal(image, np.rint(image))
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))
    inputs.append(chw)  # as the simulation got it: (C, H, W)
    call = entry.ksnn  # how the card says to call KSNN
    fed = chw if call.layout == "chw" else image
    outputs.append(ksnn.nn_inference([fed], platform=call.platform, reorder=call.reorder, output_tensor=1)[0])
np.savez(result, outputs=np.stack(outputs), inputs=np.stack(inputs))
"""


def test_decoded_image_bytes_through_the_loader_on_the_board_python_give_the_simulation(npu_models, board_python,
                                                                                           tmp_path):
    """On the board's Python 3.8 (numpy, OpenCV, ctypes): face images decoded with cv2, resized and put in the card's
    channel order, handed to the loader as pixel values: the library computes what acuitylite's quantized
    simulation computed on the same held-out faces (the simulation's own outputs, saved by the toolkit run).
    int16: in uint8 the simulation is not bit-exact with the NPU's integer arithmetic (see the README and
    vim3_emulated's layer_dumps)."""
    result = npu_models["classifier_int16"]
    report = json.loads((result.out / "report.json").read_text())
    files = report["vim3"]["simulation_files"]
    sources = report["vim3"]["eval_sources"]
    chosen = list(range(len(sources)))[-4:]
    done = subprocess.run([str(board_python), "-c", BOARD_PIXELS_SCRIPT, str(result.out),
                           json.dumps([sources[i] for i in chosen]), str(tmp_path / "board.npz")],
                          cwd=str(Path(__file__).resolve().parents[1]), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(tmp_path / "board.npz") as data:
        board, board_inputs = data["outputs"], data["inputs"]
    with np.load(files["outputs"]) as data:
        simulation = data["0"].reshape(len(sources), -1)[chosen]
    simulated_inputs = np.load(files["inputs"])[chosen]  # (N, 1, C, H, W) pixel values the simulation was given
    assert np.array_equal(board_inputs, simulated_inputs[:, 0])  # the very same input values
    parity = compare_outputs({"p": list(simulation[:, None])}, {"p": list(board.reshape(len(chosen), 1, -1))},
                             reference_name="acuitylite quantized simulation", candidate_name="board loader",
                             atol=None, min_cosine=0.999)
    assert parity.passed, parity.to_json()
    assert parity.outputs[0].top1_agreement == 1.0
