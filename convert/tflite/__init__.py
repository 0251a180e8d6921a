"""The `tflite` target: a fully integer TFLite model for the mainline kernel's NPU path (Mesa's Teflon delegate)."""
