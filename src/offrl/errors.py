"""User-facing errors. The CLI prints them as one line and exits with status 2."""


class OffrlError(Exception):
    """Bad input from the user: a file, a field, a value. Never a bug in offrl."""


class DataError(OffrlError):
    """A dataset that cannot be read or fails validation."""


class ConfigError(OffrlError):
    """An unknown algorithm, an unknown or ill-typed config field, a bad run directory."""


class DivergenceError(OffrlError):
    """Training produced NaN/inf losses, Q-values or parameters."""
