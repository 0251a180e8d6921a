"""The runtime's face detector models: MTCNN's three nets turned into `edgepad convert` output folders.

`detector_models()` builds them once into a cache (`$EDGEPAD_HOME/models/mtcnn-<version>/`, default
`~/.cache/edgepad/models/...`); `edgepad models detector -o DIR` writes them anywhere. Each of `pnet/`, `rnet/`,
`onet/` is an ordinary convert output (edgepad.json, model.onnx, report.json, and the Caffe files when that
target exists) plus `model.open.onnx`: the same graph with the batch (and, for PNet, height and width) left
open, so onnxruntime and OpenCV run every pyramid scale with one PNet and all RNet/ONet crops in one call.
The NPU needs static shapes: its compiler takes model.onnx and one fixed size per pyramid scale (see the card's
`mtcnn` section).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from edgepad.errors import ExportError
from edgepad.hashing import sha256_file
from edgepad.progress import Steps
from edgepad.runtime.card import ModelCard, MtcnnInfo, OnnxEntry
from edgepad.staging import staged_output_dir

from .mtcnn_keras import NET_NAMES, build_net, mtcnn_package_version, save_quietly
from .onnx.rewrites import fuse_prelu
from .parity import ParityResult, compare_outputs
from .report import TargetReport, read_report, write_report

MTCNN_MEAN, MTCNN_STD = 127.5, 128.0  # the nets were trained on (x - 127.5) / 128, RGB
PNET_EXPORT_SIZE = 48  # size of PNet's static model.onnx (and of its parity inputs)
PNET_CHECK_SIZES = ((31, 57), (120, 90))  # open-size PNet is re-checked against Keras at sizes it was not exported at
CACHE_FORMAT = 2  # bump when the folders change, so caches of an older edgepad are rebuilt, not reused


def default_cache_dir() -> Path:
    home = os.environ.get("EDGEPAD_HOME")
    base = Path(home) if home else Path.home() / ".cache" / "edgepad"
    return base / "models" / f"mtcnn-{mtcnn_package_version()}-f{CACHE_FORMAT}"


def detector_models(cache_dir: str | os.PathLike | None = None, steps: Steps | None = None) -> Path:
    """The folder holding pnet/, rnet/, onet/, built on first use."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    if all((folder / net / "edgepad.json").is_file() for net in NET_NAMES):
        return folder
    return build_detector_models(folder, force=True, steps=steps)


DETECTOR_TARGETS = ("onnx", "caffe")  # the board's OpenCV reads the Caffe files


def build_detector_models(out: str | os.PathLike, force: bool = False, targets: tuple[str, ...] | None = None,
                          steps: Steps | None = None) -> Path:
    """Convert PNet, RNet and ONet with edgepad's own pipeline into out/{pnet,rnet,onet}/; all or nothing."""
    from .pipeline import ConvertOptions, convert_model

    steps = steps or Steps(quiet=True)
    targets = targets or DETECTOR_TARGETS
    with staged_output_dir(out, force) as work, tempfile.TemporaryDirectory(prefix="edgepad-mtcnn-") as scratch:
        for net in NET_NAMES:
            with steps.step(f"Building MTCNN {net.upper()} from the mtcnn {mtcnn_package_version()} weights"):
                size = PNET_EXPORT_SIZE if net == "pnet" else None
                h5 = Path(scratch) / f"{net}.h5"
                save_quietly(build_net(net, size), h5)
            options = ConvertOptions(model=h5, out=work / net, targets=targets, mean=(MTCNN_MEAN,),
                                     std=(MTCNN_STD,), channel_order="rgb")
            convert_model(options, steps)
            opened = "batch and size" if net == "pnet" else "batch"
            with steps.step(f"Opening {net.upper()}'s {opened} for the host runtime"):
                write_open_onnx(net, work / net)
    return Path(out)


def write_open_onnx(net: str, folder: Path) -> None:
    """model.open.onnx: model.onnx with symbolic batch (and H, W for PNet), checked against Keras at new shapes."""
    import onnx

    card = ModelCard.load(folder)
    onnx_entry = card.targets.onnx
    proto = onnx.load(str(folder / onnx_entry.file))
    open_model = open_dims(proto, spatial=(net == "pnet"))
    open_path = folder / "model.open.onnx"
    open_path.write_bytes(open_model.SerializeToString())
    report = _check_open_model(net, open_path)

    card.targets.onnx_open = OnnxEntry(
        file=open_path.name, layout="nhwc", input=onnx_entry.input,
        input_shape=[None, None, None, 3] if net == "pnet" else [None, *onnx_entry.input_shape[1:]],
        outputs=list(onnx_entry.outputs))
    card.mtcnn = MtcnnInfo(
        net=net, package=f"mtcnn {mtcnn_package_version()}",
        note=("fully convolutional: the NPU needs one compiled model per pyramid size (H, W), listed by "
              "runtime.detector.pyramid_sizes(frame_h, frame_w, min_face_size), under targets.vim3.sizes "
              "{'HxW': {nb, library}}; model.onnx is exported at 48x48" if net == "pnet"
              else "one face crop per call on the NPU"))
    card.sha256 = {p.name: sha256_file(p) for p in sorted(folder.rglob("*"))
                   if p.is_file() and p.name not in ("edgepad.json", "report.json")}
    card.save(folder)
    report_path = folder / "report.json"
    full_report = read_report(report_path)
    full_report.targets.append(TargetReport.from_parity("onnx_open", report, files=[open_path.name]))
    write_report(report_path, full_report)


def open_dims(proto, spatial: bool):
    """A copy with the batch (and H, W) symbolic. A Reshape to [1, K] (Flatten) becomes [-1, K]."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    names = ["batch", "height", "width"] if spatial else ["batch"]
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        for index, name in enumerate(names):
            if index < len(dims) - 1:
                dims[index].dim_param = f"{value.name}_{name}" if index else "batch"
    del graph.value_info[:]  # stale static shapes; onnxruntime infers them again
    fuse_prelu(model)  # Keras 3's PReLU as one PRelu node: about twice as fast on the host
    if spatial:
        _pool_same_for_any_size(graph)
    reshape_shapes = {node.input[1] for node in graph.node if node.op_type == "Reshape"}
    for index, tensor in enumerate(graph.initializer):
        if tensor.name in reshape_shapes:
            shape = numpy_helper.to_array(tensor).copy()
            if shape.ndim == 1 and shape.size >= 1 and shape[0] == 1:
                shape[0] = -1
                graph.initializer[index].CopyFrom(numpy_helper.from_array(shape, tensor.name))
    onnx.checker.check_model(model)
    return model


def _pool_same_for_any_size(graph) -> None:
    """tf2onnx writes a Keras 'same' pool as explicit pads for the export size; other sizes need SAME_UPPER.

    PNet's only pool is 'same' (2x2, stride 2), so every MaxPool of an open-size PNet gets auto_pad.
    """
    import onnx

    for node in graph.node:
        if node.op_type != "MaxPool":
            continue
        kept = [a for a in node.attribute if a.name not in ("pads", "auto_pad")]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.append(onnx.helper.make_attribute("auto_pad", "SAME_UPPER"))


def _check_open_model(net: str, open_path: Path) -> ParityResult:
    """The open graph against Keras at shapes the static export never saw (batched crops, other PNet sizes)."""
    from .onnx.onnx_runner import run_onnx

    rng = np.random.default_rng(1)
    if net == "pnet":
        shapes = [(1, h, w, 3) for h, w in PNET_CHECK_SIZES]
    else:
        size = 24 if net == "rnet" else 48
        shapes = [(5, size, size, 3)]
    keras_model = build_net(net)
    reference: dict[str, list[np.ndarray]] = {}
    candidate: dict[str, list[np.ndarray]] = {}
    for shape in shapes:
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        keras_out = [np.asarray(t) for t in keras_model(x, training=False)]
        onnx_out = run_onnx(str(open_path), [x])
        for (name, values), expected in zip(onnx_out.items(), keras_out, strict=True):
            reference.setdefault(f"{name}@{shape[1]}x{shape[2]}", []).append(expected)
            candidate.setdefault(f"{name}@{shape[1]}x{shape[2]}", []).append(values[0])
    parity = compare_outputs(reference, candidate, reference_name="keras", candidate_name=open_path.name)
    if not parity.passed:
        raise ExportError(f"{open_path}: the open-shape graph does not match Keras "
                          f"(max abs {parity.max_abs:.3g}); the export changed in a way open_dims() cannot handle")
    return parity


