"""PAD heads other than a two-class softmax: the card records the head (softmax, sigmoid, logits) and which output
means live, from the model and --labels; the runtime turns each into P(live). Four heads built to give the same
P(live) give the same `live` from `edgepad run` on real faces."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgepad.convert.pipeline import ConvertOptions, classifier_head, convert_model
from edgepad.errors import UsageError
from edgepad.runtime.classifier import live_probability

LIVE_ATOL = 1e-3  # the four heads compute the same P(live) in float32 through different ops


def outputs_of(values) -> dict:
    return {"out": [np.asarray(row, np.float32)[None] for row in values]}


@pytest.mark.parametrize("values, labels, task, expected", [
    ([[0.2, 0.8], [0.9, 0.1]], None, None, {"head": "softmax", "labels": ["live", "spoof"], "live_index": 0}),
    ([[0.2, 0.8], [0.9, 0.1]], ("spoof", "live"), None, {"head": "softmax", "labels": ["spoof", "live"],
                                                         "live_index": 1}),
    ([[0.3], [0.7]], None, None, {"head": "sigmoid", "labels": ["live", "spoof"], "live_index": 0}),
    ([[0.3], [0.7]], ("spoof", "live"), None, {"head": "sigmoid", "live_index": 1}),
    ([[-1.5, 2.0], [0.3, 0.1]], None, None, {"head": "logits", "live_index": 0}),
    ([[-1.5], [2.0]], ("Spoof", "Real"), None, {"head": "logits", "live_index": 1}),
    (np.random.default_rng(0).standard_normal((3, 128)), None, None, {"task": "embedding"}),
    (np.random.default_rng(0).standard_normal((3, 128)), None, "classify", {"head": "logits", "live_index": 0}),
    ([[-1.5, 2.0, 0.1], [0.3, 0.1, 0.0]], None, None, {"task": "embedding"}),
    ([[-1.5, 2.0, 0.1], [0.3, 0.1, 0.0]], ("print", "live", "replay"), None, {"head": "logits", "live_index": 1}),
    ([[0.2, 0.8], [0.9, 0.1]], None, "embed", {"task": "embedding"}),
], ids=["softmax", "softmax_labels", "sigmoid", "sigmoid_labels", "logits", "one_logit_real", "embedding",
        "task_classify", "three_scores_unnamed", "three_logits_named", "task_embed"])
def test_card_records_head_and_live_index(values, labels, task, expected):
    card = classifier_head(outputs_of(values), labels, task)
    assert card.get("task") == expected.pop("task", "classifier")
    for key, value in expected.items():
        assert card[key] == value, (key, card)


@pytest.mark.parametrize("values, labels, message", [
    ([[0.2, 0.8]], ("live", "spoof", "print"), "3 names for a softmax head of 2 unit(s)"),
    ([[0.2, 0.8]], ("real_face", "fake"), "name exactly one class 'live'"),
    ([[0.3]], ("live",), "1 names for a sigmoid head of 1 unit(s) (2 classes)"),
])
def test_labels_that_do_not_fit_the_head_are_refused(values, labels, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        classifier_head(outputs_of(values), labels)


def test_runtime_live_probability_for_each_head():
    z = np.array([-3.0, -0.4, 0.0, 1.2, 5.0])
    expected = 1 / (1 + np.exp(z))  # P(live) = softmax([0, z])[0] with the default labels live,spoof
    zeros = np.zeros_like(z)
    got = {
        "softmax [0, z]": live_probability(np.exp(np.stack([zeros, z], 1)) / (1 + np.exp(z))[:, None], "softmax", 0),
        "sigmoid z": live_probability((1 / (1 + np.exp(-z)))[:, None], "sigmoid", 0),
        "logits [0, z]": live_probability(np.stack([zeros, z], 1), "logits", 0),
        "one logit z": live_probability(z[:, None], "logits", 0),
        "softmax [z, 0], spoof,live": live_probability(np.exp(np.stack([z, zeros], 1)) / (1 + np.exp(z))[:, None],
                                                       "softmax", 1),
    }
    for name, values in got.items():
        np.testing.assert_allclose(values, expected, atol=1e-12, err_msg=name)


def four_heads(size=48):
    """One trunk giving a score z per face, four heads: softmax over [0, z], sigmoid(z), logits [0, z], and
    softmax over [z, 0] (its class 0 is spoof, so it is converted with --labels spoof,live)."""
    import keras
    from keras import layers

    rng = np.random.default_rng(11)
    inputs = keras.Input((size, size, 3))
    x = layers.Conv2D(8, 5, strides=2, activation="tanh")(inputs)
    x = layers.Conv2D(8, 3, strides=2, activation="tanh")(x)
    features = layers.Flatten()(x)
    width = int(features.shape[-1])
    w = (rng.standard_normal((width, 1)) * 4 / np.sqrt(width)).astype(np.float32)
    b = np.float32(0.3)
    zero = np.zeros_like(w)
    heads = {
        "softmax_0z": (layers.Dense(2, activation="softmax"), [np.hstack([zero, w]), np.array([0, b])], None),
        "sigmoid_z": (layers.Dense(1, activation="sigmoid"), [w, np.array([b])], None),
        "logits_0z": (layers.Dense(2), [np.hstack([zero, w]), np.array([0, b])], None),
        "softmax_z0_spoof_live": (layers.Dense(2, activation="softmax"), [np.hstack([w, zero]), np.array([b, 0])],
                                  ("spoof", "live")),
    }
    trunk = keras.Model(inputs, features)
    models = {}
    for name, (dense, weights, labels) in heads.items():
        model = keras.Model(inputs, dense(trunk(inputs)), name=name)
        dense.set_weights([np.asarray(v, np.float32) for v in weights])
        models[name] = (model, labels)
    return models


@pytest.fixture()
def host_cache(tmp_path, monkeypatch, detector_models):
    """EDGEPAD_HOME whose model cache already holds the detector (so `edgepad run` does not rebuild it)."""
    from edgepad.convert.mtcnn_models import default_cache_dir

    monkeypatch.setenv("EDGEPAD_HOME", str(tmp_path / "home"))
    cache = default_cache_dir()
    cache.parent.mkdir(parents=True)
    cache.symlink_to(detector_models, target_is_directory=True)
    return cache


def test_four_heads_give_the_same_live_from_edgepad_run(tmp_path, faces_dir, host_cache):
    from edgepad.cli import cli

    live = {}
    for name, (model, labels) in four_heads().items():
        h5 = tmp_path / f"{name}.h5"
        model.save(str(h5))
        out = tmp_path / name
        result = convert_model(ConvertOptions(model=h5, out=out, targets=("onnx",), labels=labels))
        assert result.card["task"] == "classifier"
        run = CliRunner().invoke(cli, ["run", str(faces_dir / "t1.jpg"), "--classifier", str(out), "--json"])
        assert run.exit_code == 0, run.output
        live[name] = np.array([face["live"] for face in json.loads(run.stdout)["faces"]])
        print(name, result.card["head"], result.card["live_index"], np.round(live[name], 4))
    reference = live["softmax_0z"]
    assert len(reference) == 6
    # The scores mean something: an inverted head (live read as spoof) would be caught on these faces.
    assert np.abs(reference - 0.5).max() > 0.1 and np.ptp(reference) > 0.05
    for name, values in live.items():
        assert np.abs(values - reference).max() <= LIVE_ATOL, (name, values, reference)
