"""One exception class per kind of failure. The CLI prints `str(error)` as one line and exits non-zero.

Messages name the thing (file, layer, node, option) and the fix; no traceback unless --verbose.
"""


class EdgepadError(Exception):
    """Base of every failure edgepad reports to a user as one line."""

    exit_code = 1


class UsageError(EdgepadError):
    """An option or argument that cannot work (wrong format, conflicting choices)."""

    exit_code = 2


class InputFileError(EdgepadError):
    """A file given by the user is missing, unreadable, or not what it should be."""


class ModelLoadError(EdgepadError):
    """Keras could not rebuild the model from the file."""


class UnknownLayerError(ModelLoadError):
    """The file uses a layer, loss or function class that is not a Keras built-in."""


class OutputLayerError(EdgepadError):
    """--output-layer names a layer the model does not have."""


class ShapeError(EdgepadError):
    """Shapes that cannot be made static, or that disagree between two steps."""


class ExportError(EdgepadError):
    """The exporter (tf2onnx, the Caffe writer, the NPU toolkit) failed or wrote an invalid model."""


class UnsupportedOpError(ExportError):
    """The target cannot express some ops of the graph; every offending node is named at once."""


class ParityError(EdgepadError):
    """A converted model computes something else than its reference, beyond the tolerance."""


class ToolkitError(EdgepadError):
    """The VeriSilicon toolkit environment is missing or failed; the message points to its log."""


class DeployError(EdgepadError):
    """Talking to the board failed: connection, authentication, upload, verification."""


class DriverIncompatibleError(DeployError):
    """The board's NPU driver is documented not to load the release's NBG; nothing was sent."""

    def __init__(self, message: str, compatibility: dict):
        super().__init__(message)
        self.compatibility = compatibility


class HostKeyError(DeployError):
    """The board's SSH host key is unknown or changed."""
