"""Keras -> fully integer TFLite with TensorFlow's own converter, calibrated on the card's preprocessed images."""
from __future__ import annotations

import numpy as np

from edgepad.errors import ExportError

# Mesa's Teflon documents its tested models as UINT8 (MobileNet V1/V2 quantized): the model takes and gives uint8.
# TensorFlow 2's converter quantizes the inside to int8 (per-channel weights); Teflon reads per-channel scales.
IO_DTYPE = "uint8"


def quantize_to_tflite(model, input_hwc: tuple[int, int, int], calibration: list[np.ndarray]) -> bytes:
    """The flatbuffer of `model` (a tf_keras or Keras 3 model) with integer-only kernels and uint8 input/output."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    shape = (1, *input_hwc)

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def forward(x):
        return model(x, training=False)

    def representative_dataset():
        for image in calibration:
            yield [np.asarray(image, np.float32)[None]]

    # Variables frozen into constants first: a Keras 3 model's variables are not tracked by the converter, which
    # then writes READ_VARIABLE ops that fail at calibration ("variable != nullptr"); tf_keras models convert alike.
    frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    # integer kernels only: an op TFLite cannot quantize fails here instead of silently staying float
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    try:
        return converter.convert()
    except Exception as error:  # the converter raises ConverterError and plain exceptions alike
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ExportError(f"TensorFlow Lite could not quantize the model to integers: {first}") from None
