"""The project's exceptions: one base class, one subclass per concern.

Every message is meant to be shown to a user as is: it says what is wrong, where
(file, row, field) and what to do next.
"""


class FerError(Exception):
    """Base class of every error FER Studio raises on purpose."""


class DataError(FerError):
    """A data source is missing, unreadable or holds invalid rows or files."""


class ConfigError(FerError):
    """A configuration value (training option, layer notation, setting) is invalid.

    ``field``: the configuration field at fault, when one is (a form shows the message there).
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class ModelError(FerError):
    """A model cannot be built, found or loaded."""


class JobError(FerError):
    """A background job cannot be found, changed or recorded (job store, runner)."""


class QuizError(FerError):
    """A quiz round cannot be made, found or answered (a closed round, an unknown code, a limit)."""
