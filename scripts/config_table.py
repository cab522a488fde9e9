"""Render the configuration table of docs/configuration.md from the settings class, so the two
never drift.

    python scripts/config_table.py            # rewrite the table between the markers
    python scripts/config_table.py --check    # exit 1 when the page is out of date (tests, CI)

Every field of `Settings` (which includes `DatabaseSettings`) becomes one row: the variable, its
default and its `Field(description=...)` with the allowed values or range. Secrets never show a
value, only "required" or "unset"; defaults that contain this checkout's folder show a
placeholder instead, so the table reads the same on every machine.
"""

import argparse
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import SecretStr
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: `app` is not importable from scripts/

from app.core.config import PROJECT_DIR, Settings  # noqa: E402

PAGE = ROOT / "docs" / "configuration.md"
START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"
HEADER = "| Variable | Default | Meaning |\n|---|---|---|"
PROJECT_PLACEHOLDER = "<project folder>"


def type_arguments(annotation: Any) -> list[Any]:
    """The annotation and, for unions (`X | None`), each of its members."""
    if get_origin(annotation) in (Union, types.UnionType):
        return [arg for arg in get_args(annotation) if arg is not type(None)]
    return [annotation]


def is_secret(field: FieldInfo) -> bool:
    return any(arg is SecretStr for arg in type_arguments(field.annotation))


def code(value: str) -> str:
    return f"`{value}`"


def show(value: Any) -> str:
    if isinstance(value, bool):
        return code(str(value).lower())
    if isinstance(value, float) and value.is_integer():
        return code(str(int(value)))
    if isinstance(value, list):
        return code(",".join(str(item) for item in value)) if value else "empty"
    if isinstance(value, dict):
        return code(",".join(f"{key}={item}" for key, item in value.items())) if value else "empty"
    text = str(value).replace(str(PROJECT_DIR), PROJECT_PLACEHOLDER)
    return code(text) if text else "empty"


def default_of(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    default = field.get_default(call_default_factory=True)
    if default is None:
        return "unset"
    if is_secret(field):
        return "set"  # a secret with a default would be a bug; never print it
    return show(default)


def allowed_values(field: FieldInfo) -> str:
    """`one of ...` for a Literal, the range for numeric bounds, the length for strings."""
    for arg in type_arguments(field.annotation):
        if get_origin(arg) is Literal:
            return "one of " + ", ".join(code(str(choice)) for choice in get_args(arg))
    low = high = ""
    length: list[str] = []
    longest = ""
    for item in field.metadata:
        if isinstance(item, Ge):
            low = show(item.ge)
        elif isinstance(item, Gt):
            low = f"above {show(item.gt)}"
        elif isinstance(item, Le):
            high = show(item.le)
        elif isinstance(item, Lt):
            high = f"below {show(item.lt)}"
        elif isinstance(item, MinLen):
            length.append(str(item.min_length))
        elif isinstance(item, MaxLen):
            longest = str(item.max_length)
    if length and longest:
        return f"{length[0]}..{longest} characters"
    if longest:
        return f"up to {longest} characters"
    if low and high:
        return f"{low}..{high}" if not low.startswith("above") else f"{low}, up to {high}"
    if low:
        return low if low.startswith("above") else f"at least {low}"
    return f"up to {high}" if high else ""


def row(name: str, field: FieldInfo) -> str:
    description = (field.description or "").strip()
    allowed = allowed_values(field)
    if allowed:
        description = f"{description.rstrip('.')} ({allowed})."
    cells = [code(name.upper()), default_of(field), description]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def render() -> str:
    rows = [row(name, field) for name, field in Settings.model_fields.items()]
    return "\n".join([START, HEADER, *rows, END])


def updated(page: str) -> str:
    start, end = page.find(START), page.find(END)
    if start == -1 or end < start:
        raise SystemExit(f"the page has no {START} ... {END} markers")
    return page[:start] + render() + page[end + len(END) :]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    parser.add_argument("--page", type=Path, default=PAGE, help="default: docs/configuration.md")
    args = parser.parse_args()
    current = args.page.read_text(encoding="utf-8")
    wanted = updated(current)
    if args.check:
        if wanted != current:
            print(
                f"{args.page.name}: the configuration table is out of date; "
                "run `python scripts/config_table.py`",
                file=sys.stderr,
            )
            return 1
        return 0
    if wanted != current:
        args.page.write_text(wanted, encoding="utf-8")
        print(f"Updated the configuration table in {args.page.name}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
