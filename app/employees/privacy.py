"""Private fields (EMPLOYEE_DOB_VISIBLE_TO): who sees an employee's birth date. For the others
the field is left out of every record they read (one, lists, CSV exports, histories), and an
order by it is refused: the order of the rows would tell the values apart.
"""

from app.accounts.access import Role
from app.core.config import DobVisibleTo
from app.core.errors import ForbiddenError

BIRTH_DATE = ("emp_dob",)
_SEEN_BY: dict[str, frozenset[Role]] = {
    "all": frozenset(Role),
    "auditors": frozenset({Role.admin, Role.auditor}),
    "admins": frozenset({Role.admin}),
}
# The tags of a record read without its private fields differ from the whole record's: two
# representations of one version must not share a strong ETag (RFC 9110 8.8.3).
REDACTED_TAG_SUFFIX = "-redacted"


def hidden_fields(role: Role, dob_visible_to: DobVisibleTo) -> tuple[str, ...]:
    """The fields left out of what this role reads (none for admins, whatever the setting)."""
    return () if role in _SEEN_BY[dob_visible_to] else BIRTH_DATE


def refuse_hidden_sort(sort_by: str, hidden: tuple[str, ...]) -> None:
    if sort_by in hidden:
        raise ForbiddenError(f"Sorting by {sort_by} is not allowed for this account")
