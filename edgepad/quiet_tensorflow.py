"""Import TensorFlow without its start-up chatter on the user's terminal.

TensorFlow's C++ side writes CUDA probing and absl notices straight to file descriptor 2 while it loads,
before TF_CPP_MIN_LOG_LEVEL can take effect; none of it concerns a CPU conversion. Import errors still
surface as Python exceptions.
"""
from __future__ import annotations

import os
import sys


def import_tensorflow():
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe logs here, once
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tf
