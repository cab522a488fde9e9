"""Write `.env` from `.env.example`, filling every empty secret with a fresh random value.

Standard library only: it runs before the virtualenv exists. Prints the first admin's
credentials once; they are not shown again (they stay readable in `.env`, mode 0600).
"""

import argparse
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = {
    "JWT_SECRET_KEY": lambda: secrets.token_urlsafe(48),
    "FIRST_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(18),
    "POSTGRES_PASSWORD": lambda: secrets.token_urlsafe(24),
}


def render(example: str) -> tuple[str, dict[str, str]]:
    filled: dict[str, str] = {}
    lines = []
    for line in example.splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and name in GENERATED and not value.strip():
            filled[name] = GENERATED[name]()
            line = f"{name}={filled[name]}"
        lines.append(line)
    return "\n".join(lines) + "\n", filled


def value_of(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--example", type=Path, default=ROOT / ".env.example")
    parser.add_argument("--output", type=Path, default=ROOT / ".env")
    args = parser.parse_args()
    if args.output.exists():
        print(f"{args.output.name} exists; leaving it as it is.")
        return 0
    text, filled = render(args.example.read_text(encoding="utf-8"))
    args.output.touch(mode=0o600)
    args.output.write_text(text, encoding="utf-8")
    print(f"Wrote {args.output.name} with generated secrets ({', '.join(sorted(filled))}).")
    if "FIRST_ADMIN_PASSWORD" in filled:
        username = value_of(text, "FIRST_ADMIN_USERNAME")
        print(f"First admin (created at start-up): {username} / {filled['FIRST_ADMIN_PASSWORD']}")
        print("This password is not shown again; change it or keep it somewhere safe.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
