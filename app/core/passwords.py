"""Password policy (NIST SP 800-63B): length, no well-known passwords, not the username."""

from functools import lru_cache
from pathlib import Path

MIN_LENGTH = 8
MAX_LENGTH = 128
COMMON_PASSWORDS_FILE = Path(__file__).with_name("data") / "common_passwords.txt"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line and not line.startswith("#"))


def password_problem(password: str, username: str | None = None) -> str | None:
    """Why this password is refused, or None. Length is checked by the input models."""
    if password.lower() in common_passwords():
        return "is one of the most common passwords; choose another"
    if username is not None and password.casefold() == username.casefold():
        return "must not be the same as the username"
    return None
