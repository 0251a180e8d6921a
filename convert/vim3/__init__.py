"""The VIM3 NPU target: ONNX -> quantized NBG (VeriSilicon toolkit or Khadas SDK), the NPU library, the emulator."""
