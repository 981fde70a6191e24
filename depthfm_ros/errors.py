"""Typed errors. Every failure the library reports on bad input is one of these."""


class DepthFMError(Exception):
    """Base class of every error raised on purpose by depthfm_ros."""


class CheckpointError(DepthFMError):
    """A checkpoint or model folder is missing, corrupt, or not what it claims to be."""


class InputError(DepthFMError, ValueError):
    """An input array or message has the wrong dtype, shape, size or encoding."""


class BackendError(DepthFMError):
    """A backend cannot run: engine/graph built for another shape, missing runtime, no GPU."""


class AlignmentError(DepthFMError):
    """Metric alignment refused: too few LiDAR points, or a degenerate fit."""
