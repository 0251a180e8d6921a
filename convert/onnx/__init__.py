"""The ONNX target: Keras (tf_keras or Keras 3) -> ONNX (keras_to_onnx.py), checked against the Keras model
(target.py, onnx_runner.py); rewrites.py holds the ONNX -> ONNX rewrites other steps share."""
