"""openapi/v1.json: the committed contract of version 1, written from the live application.

    python scripts/openapi_file.py                     # make openapi: rewrite it, unless breaking
    python scripts/openapi_file.py --check             # exit 1 when it is broken or out of date
    python scripts/openapi_file.py --accept-breaking   # rewrite it even so (see docs/api.md)

The application is built with its settings' defaults, whatever the environment or `.env` say,
and the file is written with sorted keys: the same code gives the same bytes on every machine.
Refusing a breaking change is the point: a client of v1 would fail; it needs a /v2.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a script: `app` is not importable from scripts/

from schema_compat import breaking_changes  # noqa: E402

from app.core.config import Settings  # noqa: E402
from app.main import create_app  # noqa: E402

COMMITTED = ROOT / "openapi" / "v1.json"
REGENERATE = "run `make openapi` if the change is intended and additive"


class DefaultSettings(Settings):
    """The settings' defaults only: neither the environment nor `.env` is read."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def live_schema() -> dict[str, Any]:
    settings = DefaultSettings(jwt_secret_key=SecretStr("schema-only-" + "x" * 32))
    schema: dict[str, Any] = create_app(settings).openapi()
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def committed() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return loaded


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Write or check openapi/v1.json.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only compare; write nothing")
    mode.add_argument("--accept-breaking", action="store_true", help="write even a breaking change")
    args = parser.parse_args(argv)
    schema = live_schema()
    breaks = breaking_changes(committed(), schema) if COMMITTED.exists() else []
    if breaks and not args.accept_breaking:
        print(f"The live schema breaks {shown(COMMITTED)}:", file=sys.stderr)
        for problem in breaks:
            print(f"  {problem}", file=sys.stderr)
        print("A breaking change needs a new version (docs/api.md#versioning).", file=sys.stderr)
        return 1
    text = render(schema)
    if args.check:
        if not COMMITTED.exists() or COMMITTED.read_text(encoding="utf-8") != text:
            print(f"{shown(COMMITTED)} is out of date: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    COMMITTED.parent.mkdir(exist_ok=True)
    COMMITTED.write_text(text, encoding="utf-8")
    print(f"Wrote {shown(COMMITTED)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
