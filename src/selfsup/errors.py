"""The one error type users see: raised for bad input, shown as a single line by the CLI."""


class SelfsupError(Exception):
    """A problem with the user's input or environment, phrased for the user.

    The CLI prints ``selfsup: error: <message>`` on stderr and exits with code 2;
    the Python API lets it propagate.
    """


class DataError(SelfsupError):
    """A data set could not be read: a missing path, an empty folder, a corrupt image."""


class ConfigError(SelfsupError):
    """An unknown option, method, backbone, override key, or an invalid value."""


class TrainingError(SelfsupError):
    """Training cannot go on (for example, the loss became NaN)."""
