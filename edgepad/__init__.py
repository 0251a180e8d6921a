"""edgepad: a face anti-spoofing model from Keras to the Khadas VIM3 NPU, checked at every step."""

__version__ = "0.1.0"
