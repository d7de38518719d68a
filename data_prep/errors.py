class DataError(RuntimeError):
    """A dataset cannot be prepared or read; the message names the file or the field."""
