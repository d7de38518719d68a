"""Credentials out of what genpipe prints, stores and logs.

A URI may carry `user:password@` (or a token as its user); such text is redacted wherever genpipe
writes text a person or a dashboard can read: the console, log files, step error records. Values
of environment variables that hold secrets are redacted too, wherever they appear verbatim.
"""

from __future__ import annotations

import os
import re

# scheme://userinfo@ : the userinfo of any URI (user:password, or a lone token)
USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@:]+(?::[^/\s@]*)?)@")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|CREDENTIAL|PRIVATE|ACCESS_KEY|SESSION_KEY|API_KEY", re.IGNORECASE)
MASK = "***"
SHORTEST_SECRET = 6  # shorter values (a flag, "true") would redact ordinary words


def has_credentials(text: str) -> bool:
    """Whether `text` holds a URI with a password or a token-like user (`git@` is a plain user)."""
    for match in USERINFO.finditer(text):
        user, _, password = match.group("userinfo").partition(":")
        if password or len(user) >= 20:
            return True
    return False


def secret_values() -> list[str]:
    """The values of this process's environment variables whose names say they are secrets."""
    values = {value for name, value in os.environ.items() if SECRET_NAME.search(name)}
    return sorted((v for v in values if len(v) >= SHORTEST_SECRET), key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every URI's userinfo and every secret environment value replaced by ***."""
    text = USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    for value in secret_values():
        text = text.replace(value, MASK)
    return text
