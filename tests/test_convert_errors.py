"""Bad input to `edgepad convert`: one clear line naming the thing and the fix, non-zero exit, no OUT left behind."""
from __future__ import annotations

import h5py
import numpy as np
from click.testing import CliRunner

from edgepad.cli import cli

import keras_models
from support.paths import LEGACY_H5


def run_convert(*args):
    result = CliRunner().invoke(cli, ["convert", *map(str, args)])
    return result.exit_code, result.output


def assert_one_clear_line(code, output, *needles):
    assert code != 0
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_missing_file(tmp_path):
    out = tmp_path / "out"
    code, output = run_convert(tmp_path / "nope.h5", "-o", out, "--to", "onnx")
    assert_one_clear_line(code, output, "nope.h5", "no such file")
    assert not out.exists()


def test_not_hdf5(tmp_path):
    bogus = tmp_path / "model.h5"
    bogus.write_text("this is a text file\n")
    out = tmp_path / "out"
    code, output = run_convert(bogus, "-o", out, "--to", "onnx")
    assert_one_clear_line(code, output, "model.h5", "not an HDF5 file")
    assert not out.exists()


def test_hdf5_without_a_keras_model(tmp_path):
    data = tmp_path / "data.h5"
    with h5py.File(data, "w") as f:
        f["x"] = np.zeros(3)
    out = tmp_path / "out"
    code, output = run_convert(data, "-o", out, "--to", "onnx")
    assert_one_clear_line(code, output, "data.h5", "no Keras model", "model.save")
    assert not out.exists()


def test_truncated_file(tmp_path):
    whole = (LEGACY_H5 / "pad_mobilenet.h5").read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out"
    code, output = run_convert(cut, "-o", out, "--to", "onnx")
    assert_one_clear_line(code, output, "cut.h5", "truncated")
    assert not out.exists()


def test_unknown_layer_class_names_it_and_suggests_the_fixes(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="edgepad_test")
    class NormDense(keras.layers.Dense):
        pass

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(inputs)
    x = NormDense(4, name="norm_dense")(x)
    h5 = tmp_path / "arcface.h5"
    keras.Model(inputs, x).save(str(h5))
    keras.saving.get_custom_objects().clear()  # a user's fresh process does not know the class

    out = tmp_path / "out"
    code, output = run_convert(h5, "-o", out, "--to", "onnx")
    assert_one_clear_line(code, output, "'norm_dense'", "NormDense", "--custom-objects", "--output-layer")
    assert not out.exists()


def test_output_layer_that_does_not_exist_lists_nearest_names(tmp_path):
    out = tmp_path / "out"
    code, output = run_convert(LEGACY_H5 / "pad_mobilenet.h5", "-o", out, "--to", "onnx", "--output-layer", "pad_prb")
    line = assert_one_clear_line(code, output, "pad_prb", "nearest names")
    assert "pad_prob" in line
    assert not out.exists()


def test_open_input_dimensions_need_input_shape(tmp_path):
    h5 = tmp_path / "fcn.h5"
    keras_models.fully_convolutional().save(str(h5))
    out = tmp_path / "out"
    code, output = run_convert(h5, "-o", out, "--to", "onnx")
    assert_one_clear_line(code, output, "fcn.h5", "open dimensions", "--input-shape")
    assert not out.exists()


def test_parity_beyond_tolerance_fails_and_names_the_output(tmp_path):
    out = tmp_path / "out"
    code, output = run_convert(LEGACY_H5 / "pad_mobilenet.h5", "-o", out, "--to", "onnx", "--atol", "1e-12")
    assert_one_clear_line(code, output, "pad_prob", "max abs", "tolerance")
    assert not out.exists()


def test_existing_output_is_kept_unless_forced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, output = run_convert(LEGACY_H5 / "sequential_small.h5", "-o", out, "--to", "onnx")
    assert_one_clear_line(code, output, "not empty", "--force")
    assert (out / "keep.txt").read_text() == "mine"

    code, output = run_convert(LEGACY_H5 / "sequential_small.h5", "-o", out, "--to", "onnx", "--force")
    assert code == 0, output
    assert (out / "model.onnx").exists() and not (out / "keep.txt").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_verbose_shows_the_traceback(tmp_path):
    result = CliRunner().invoke(cli, ["convert", str(tmp_path / "nope.h5"), "-o", str(tmp_path / "o"), "--verbose"])
    assert result.exit_code != 0
    assert "Traceback" in result.output


def test_unknown_target_is_a_usage_error(tmp_path):
    code, output = run_convert(LEGACY_H5 / "sequential_small.h5", "-o", tmp_path / "out", "--to", "onnx,coreml")
    assert_one_clear_line(code, output, "--to", "coreml")


def test_json_report_on_stdout(tmp_path):
    import json

    result = CliRunner().invoke(cli, ["convert", str(LEGACY_H5 / "sequential_small.h5"), "-o", str(tmp_path / "o"),
                                      "--to", "onnx", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["onnx"]["passed"] and report["onnx"]["max_abs"] < 1e-4
    assert 0.9999 < report["onnx"]["cosine"] <= 1.0 + 1e-9
    assert report["onnx"]["top1_agreement"] == 1.0
