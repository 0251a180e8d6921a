"""A face recognition model and a verification set for the embedding tests, both made here.

- The model: a small MobileFaceNet-like Keras net trained ArcFace-style, i.e. with a custom L2-normalised
  `NormDense` head (defined in its own Python file, as a user's --custom-objects), cut at its layer "embedding".
- The pairs: LFW's layout (<name>/<name>_<NNNN>.jpg, 250x250) and pairs.txt, made from the real face photos in
  tests/fixtures/faces (the six people of insightface's t1.jpg, scikit-image's astronaut, insightface's aligned
  Tom Hanks): each person four times (different crops, a mirror image, brightness, a small rotation); plus one
  image without a face, whose pair must come out as a null distance.
"""
from __future__ import annotations

import hashlib
import importlib.util
import itertools
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from .board_env import test_cache
from .paths import FACES

NORMDENSE_SOURCE = '''"""Custom layers of the embedding model (as a user keeps them beside a training script)."""
import keras


class NormDense(keras.layers.Layer):
    """ArcFace's classification head: logits = normalised input . normalised class weights."""

    def __init__(self, units=10, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(name="norm_dense_w", shape=(int(input_shape[-1]), self.units),
                                 initializer="glorot_normal", trainable=True)

    def call(self, inputs):
        norm_w = keras.ops.normalize(self.w, axis=0)
        norm_inputs = keras.ops.normalize(inputs, axis=1)
        return keras.ops.matmul(norm_inputs, norm_w)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
'''

ROOT = Path(__file__).resolve().parents[2]
SIZE = 112
EMBEDDING = 64
IMAGES_PER_PERSON = 4
NO_FACE = "Background"


def build_embedding_model(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """(model.h5, layers.py): the training model with its NormDense head, and the file that defines the head."""
    import keras
    from keras import layers

    folder.mkdir(parents=True, exist_ok=True)
    layers_py = folder / "norm_dense_layers.py"
    layers_py.write_text(NORMDENSE_SOURCE)
    spec = importlib.util.spec_from_file_location("norm_dense_layers", layers_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="face")
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.PReLU(shared_axes=[1, 2])(x)
    for filters, stride in ((16, 1), (32, 2), (32, 1), (48, 2), (64, 2)):
        y = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
        y = layers.BatchNormalization()(y)
        y = layers.PReLU(shared_axes=[1, 2])(y)
        y = layers.Conv2D(filters, 1, use_bias=False)(y)
        y = layers.BatchNormalization()(y)
        x = layers.Add()([x, y]) if stride == 1 and x.shape[-1] == filters else y
    x = layers.DepthwiseConv2D(int(x.shape[1]), padding="valid", use_bias=False, name="global_depthwise")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(EMBEDDING, use_bias=False)(x)
    x = layers.BatchNormalization(name="embedding")(x)
    logits = module.NormDense(10, name="norm_dense")(x)
    model = keras.Model(inputs, logits, name="mobilefacenet_arcface")
    _settle_batchnorm(model, seed)
    path = folder / "mobilefacenet_arcface.h5"
    model.save(path)
    return path, layers_py


def _settle_batchnorm(model, seed):
    """BatchNorm statistics measured layer by layer on face images (as training leaves them), with random
    scale and shift: outputs depend on the face (a fresh random net maps every face to nearly one embedding),
    and the converters must fold non-trivial BatchNorms right."""
    import keras

    rng = np.random.default_rng(seed)
    faces = _calibration_faces()
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            features = np.asarray(keras.Model(model.inputs, layer.input)(faces, training=False))
            axes = tuple(range(features.ndim - 1))
            gamma, beta, _, _ = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                               rng.uniform(-0.2, 0.2, beta.shape).astype(np.float32),
                               features.mean(axis=axes).astype(np.float32),
                               (features.var(axis=axes) + 1e-3).astype(np.float32)])


def _calibration_faces() -> np.ndarray:
    """Normalised 112x112 face-like inputs: the aligned Tom Hanks crop and patches of the fixture photos."""
    images = [cv2.imread(str(FACES / "Tom_Hanks_54745.png"))]
    for name in ("astronaut.png", "t1.jpg"):
        photo = cv2.imread(str(FACES / name))
        h, w = photo.shape[:2]
        for y in range(0, h - 112, max((h - 112) // 4, 1)):
            for x in range(0, w - 112, max((w - 112) // 4, 1)):
                images.append(photo[y:y + 112, x:x + 112])
    batch = np.stack([cv2.cvtColor(image, cv2.COLOR_BGR2RGB) for image in images]).astype(np.float32)
    return (batch - 127.5) / 127.5


def converted_embedding_dir() -> Path:
    """The model converted by `edgepad convert`'s own pipeline (onnx, caffe), cut at "embedding"; cached."""
    from edgepad.convert.pipeline import ConvertOptions, convert_model

    digest = hashlib.sha256()
    for file in sorted((ROOT / "convert").rglob("*.py")) + [Path(__file__)]:
        digest.update(file.read_bytes())
    folder = test_cache() / f"embedding-{digest.hexdigest()[:12]}"
    for old in folder.parent.glob("embedding-*"):  # made from older sources, untouched for an hour
        if old != folder and old.is_dir() and time.time() - old.stat().st_mtime > 3600:
            shutil.rmtree(old, ignore_errors=True)
    out = folder / "emb_out"
    if not (out / "edgepad.json").is_file():
        h5, layers_py = build_embedding_model(folder / "keras")
        convert_model(ConvertOptions(model=h5, out=out, custom_objects=layers_py, output_layer="embedding",
                                     match_threshold=1.0, force=True))
    return folder


# -- the LFW-layout pairs --------------------------------------------------------------------------------------
def _people(detector) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (photo, face box x1 y1 x2 y2) for every person in the fixture photos."""
    people = {}
    group = cv2.imread(str(FACES / "t1.jpg"))
    faces = sorted(detector.detect(group), key=lambda f: f.box[0])
    for index, face in enumerate(faces, start=1):
        people[f"Group_Person{index}"] = (group, np.array(face.box))
    astronaut = cv2.imread(str(FACES / "astronaut.png"))
    (face,) = detector.detect(astronaut)
    people["Eileen_Collins"] = (astronaut, np.array(face.box))
    hanks = cv2.copyMakeBorder(cv2.imread(str(FACES / "Tom_Hanks_54745.png")), 56, 56, 56, 56, cv2.BORDER_REPLICATE)
    people["Tom_Hanks"] = (hanks, np.array([56 + 20.0, 56 + 10.0, 56 + 92.0, 56 + 105.0]))
    return people


def _variant(photo: np.ndarray, box: np.ndarray, k: int) -> np.ndarray:
    """The k-th 250x250 picture of a face: crops of different context and offset, mirrored, darker, turned."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1])
    scale, dx, dy, angle, flip, gain = [(2.2, 0.0, 0.0, 0, False, 1.0), (1.8, 0.08, -0.05, 0, True, 1.0),
                                        (2.5, -0.06, 0.04, 8, False, 0.75), (2.0, 0.04, 0.06, -6, True, 1.2)][k]
    half = scale * side / 2
    centre = (cx + dx * side, cy + dy * side)
    rotation = cv2.getRotationMatrix2D(centre, angle, 250 / (2 * half))
    rotation[:, 2] += np.array([125.0, 125.0]) - np.array(centre)
    image = cv2.warpAffine(photo, rotation, (250, 250), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if flip:
        image = cv2.flip(image, 1)
    return np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def build_lfw_pairs(root: Path, detector) -> tuple[Path, Path]:
    """(DATASET, pairs.txt) in LFW's layout. `detector` finds the faces to crop (data.faces.make_detector)."""
    if root.exists():
        shutil.rmtree(root)
    people = _people(detector)
    for name, (photo, box) in people.items():
        (root / name).mkdir(parents=True)
        for k in range(IMAGES_PER_PERSON):
            cv2.imwrite(str(root / name / f"{name}_{k + 1:04d}.jpg"), _variant(photo, box, k),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
    # No face: a patch of the astronaut photo's background (the flag), and a flat grey card.
    (root / NO_FACE).mkdir()
    astronaut = cv2.imread(str(FACES / "astronaut.png"))
    cv2.imwrite(str(root / NO_FACE / f"{NO_FACE}_0001.jpg"), cv2.resize(astronaut[0:120, 380:500], (250, 250)))
    names = sorted(people)
    same = [f"{n}\t{i}\t{j}" for n in names for i, j in itertools.combinations(range(1, IMAGES_PER_PERSON + 1), 2)]
    different = [f"{a}\t{1 + (k % IMAGES_PER_PERSON)}\t{b}\t{1 + ((k + 1) % IMAGES_PER_PERSON)}"
                 for k, (a, b) in enumerate(itertools.combinations(names, 2))]
    different.append(f"{NO_FACE}\t1\t{names[0]}\t1")
    # LFW's order: folds of same pairs then different pairs; here 4 folds, interleaved likewise.
    lines = []
    folds = 4
    for fold in range(folds):
        lines += same[fold::folds] + different[fold::folds]
    pairs = root / "pairs.txt"
    pairs.write_text(f"{folds}\t{len(same) // folds}\n" + "\n".join(lines) + "\n")
    return root, pairs
