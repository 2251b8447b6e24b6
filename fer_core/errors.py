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
    ``fields``: ``{field: what is wrong}`` for every field at fault (a form shows each under its
    widget); ``{field: message}`` for an error about one field, empty when no field is named.
    """

    def __init__(self, message: str, field: str | None = None, fields: dict[str, str] | None = None):
        super().__init__(message)
        self.field = field
        self.fields = dict(fields) if fields else {field: message} if field else {}


class ModelError(FerError):
    """A model cannot be built, found or loaded."""


class JobError(FerError):
    """A background job cannot be found, changed or recorded (job store, runner)."""


class QuizError(FerError):
    """A quiz round cannot be made, found or answered (a closed round, an unknown code, a limit)."""
