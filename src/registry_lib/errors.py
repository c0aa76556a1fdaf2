"""User-facing errors.

Every mistake a user can make (a missing cohort, an unknown study, a bad parameter, a record
that breaks a schema) raises :class:`RegistryLabError` with one sentence naming the file, the
record or the parameter at fault. The command line prints that sentence without a traceback.

Example:
    >>> raise RegistryLabError("params/cohort/tiny.yaml: no such cohort config")
    Traceback (most recent call last):
    ...
    registry_lib.errors.RegistryLabError: params/cohort/tiny.yaml: no such cohort config
"""


class RegistryLabError(Exception):
    """A user-facing error whose message is one clear sentence.

    Example:
        >>> str(RegistryLabError("level=2: must lie strictly between 0 and 1"))
        'level=2: must lie strictly between 0 and 1'
    """


class SchemaError(RegistryLabError):
    """A table does not match its declared schema.

    Example:
        >>> issubclass(SchemaError, RegistryLabError)
        True
    """


class ConfigError(RegistryLabError):
    """A params file is missing, malformed, or names an unknown key.

    Example:
        >>> issubclass(ConfigError, RegistryLabError)
        True
    """


class RegistryLabWarning(UserWarning):
    """A user-facing warning whose message is one clear sentence (e.g. a column that parsed to
    mostly nothing).

    Example:
        >>> issubclass(RegistryLabWarning, UserWarning)
        True
    """
