"""The ONNX target: Keras (tf_keras or Keras 3) -> ONNX, checked against the Keras model."""
