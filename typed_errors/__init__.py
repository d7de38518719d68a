"""Errors that carry what they are about, so each layer words them for its own reader.

The lowest layer: the zoo, data preparation and serving raise these; the config layer turns a
`FieldError` into the `section.field: reason` line a user reads, the CLI turns an `OptionError`
into the flag they typed. Nothing matches on the text of a message to learn which field it names.
"""

from __future__ import annotations

from typing import Any

NOT_GIVEN: Any = object()


class FieldError(ValueError):
    """A config value that does not fit: `field` is the name in the raiser's own config (a family's
    `downsamplings`, `image_shape`), `reason` the rest of the sentence."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason

    def __reduce__(self) -> tuple[Any, ...]:  # crosses Ray's process boundaries whole
        return (type(self), (self.field, self.reason))


class OptionError(ValueError):
    """A sampling option (a `genpipe sample` flag, a served request's field, a family's own option)
    that does not fit the model; `value` is what was given, when it matters to the reason."""

    def __init__(self, option: str, reason: str, value: Any = NOT_GIVEN):
        given = "" if value is NOT_GIVEN else f"={value}"
        super().__init__(f"{option}{given}: {reason}")
        self.option, self.reason, self.value = option, reason, value

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.option, self.reason, self.value))


def first_line(error: BaseException, limit: int | None = None) -> str:
    """An error's one-line summary: its message's first non-empty line (its type's name when it
    has none), cut at `limit` characters."""
    line = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return line if limit is None else line[:limit]
