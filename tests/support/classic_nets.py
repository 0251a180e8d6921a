"""The nine classic ImageNet networks the onnx wheel ships as backend test data (`onnx/backend/test/data/light`),
made runnable: their weights are ConstantOfShape nodes (all zeros or ones), replaced here by seeded random
initializers scaled so activations stay near unit size through every layer (He init for Conv/Gemm, batch
statistics near their identity), so the outputs depend on every weight."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSIC_NETS = {
    "alexnet": "light_bvlc_alexnet.onnx",
    "googlenet": "light_inception_v1.onnx",
    "inception_v2": "light_inception_v2.onnx",
    "squeezenet": "light_squeezenet.onnx",
    "vgg19": "light_vgg19.onnx",
    "zfnet": "light_zfnet512.onnx",
    "resnet50": "light_resnet50.onnx",
    "shufflenet": "light_shufflenet.onnx",
    "densenet121": "light_densenet121.onnx",
}


def light_dir() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def _random_weight(rng, shape: list[int], consumer, index: int) -> np.ndarray:
    op = consumer.op_type if consumer is not None else ""
    if op == "BatchNormalization":  # scale, bias, mean, var
        if index in (1, 4):
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return (rng.standard_normal(shape, dtype=np.float32) * 0.1).astype(np.float32)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))  # Conv [O, I, kh, kw]; Gemm with transB=1 [out, in]
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in)))
    if op in ("Mul",) or (op == "Unsqueeze" and "_s" in (consumer.input[0] if consumer.input else "")):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return (rng.standard_normal(shape, dtype=np.float32) * 0.1).astype(np.float32)


def classic_net(name: str, seed: int = 0):
    """The network `name` (a key of CLASSIC_NETS) as an ONNX ModelProto with random weights, ir_version 4, its
    outputs the class probabilities and the scores the final Softmax reads."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(light_dir() / CLASSIC_NETS[name]))
    graph = model.graph
    shapes = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i, tensor in enumerate(node.input):
            consumers.setdefault(tensor, []).append((node, i))
    rng = np.random.default_rng(seed)
    weights, kept_nodes = [], []
    for node in graph.node:
        if node.op_type != "ConstantOfShape":
            kept_nodes.append(node)
            continue
        shape = [int(d) for d in shapes[node.input[0]]]
        consumer, index = (consumers.get(node.output[0]) or [(None, 0)])[0]
        if consumer is not None and consumer.op_type == "Unsqueeze":  # BatchNorm written out: Unsqueeze -> Mul/Add
            after = (consumers.get(consumer.output[0]) or [(None, 0)])[0][0]
            consumer, index = after, 1
        weights.append(numpy_helper.from_array(_random_weight(rng, shape, consumer, index), node.output[0]))
    used = {t for node in kept_nodes for t in node.input}
    del graph.node[:]
    graph.node.extend(kept_nodes)
    kept_initializers = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_initializers + weights)
    initialized = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialized and i.name in used]
    del graph.input[:]
    graph.input.extend(inputs)
    # The scores before the final Softmax become an output too: random weights can saturate the softmax to a
    # one-hot vector, which would hide any difference in the layers before it.
    model.ir_version = max(model.ir_version, 4)
    final = next((n for n in reversed(kept_nodes) if n.op_type == "Softmax"), None)  # DenseNet-121 ends with GAP
    if final is not None:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        graph.output.append(next(v for v in inferred.graph.value_info if v.name == final.input[0]))
    onnx.checker.check_model(model)
    return model


def classic_input(model, seed: int = 1) -> np.ndarray:
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(seed).standard_normal(dims, dtype=np.float32)
