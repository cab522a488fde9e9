"""The breaking changes between two OpenAPI 3.1 documents: what a client written against the old
one could meet in the new one (docs/api.md#versioning lists the rules).

    python scripts/schema_compat.py OLD.json NEW.json   # each break on a line; exit 1 if any

An operation (path and method) removed; a parameter, request body or request field newly
required, or removed; a documented response, response header or media type removed; and, in
the schemas (`json_schema_compat`), an input narrowed or an output widened or left out.
"""

import json
import sys
from collections.abc import Iterator
from pathlib import Path

from json_schema_compat import Direction, Schema, SchemaDiff

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
Parameters = dict[tuple[str, str], Schema]


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """One readable line per break, naming the operation and the field."""
    return list(_Operations(old, new).changes())


class _Operations:
    def __init__(self, old: Schema, new: Schema) -> None:
        self.old, self.new = old, new
        self.schemas = SchemaDiff(old, new)

    def changes(self) -> Iterator[str]:
        new_paths = self.new.get("paths", {})
        for path, old_item in self.old.get("paths", {}).items():
            for method in METHODS:
                if method not in old_item:
                    continue
                name = f"{method.upper()} {path}"
                if method not in new_paths.get(path, {}):
                    yield f"{name}: operation removed"
                    continue
                for problem in self.operation(old_item, new_paths[path], method):
                    yield f"{name}: {problem}"

    def operation(self, old_item: Schema, new_item: Schema, method: str) -> Iterator[str]:
        old, new = old_item[method], new_item[method]
        if not old.get("security") and new.get("security"):
            yield "now requires authentication"
        yield from self.parameters(
            self.parameters_of(old_item, old, self.old), self.parameters_of(new_item, new, self.new)
        )
        yield from self.request_body(old.get("requestBody"), new.get("requestBody"))
        new_responses = new.get("responses", {})
        for code, old_response in old.get("responses", {}).items():
            if code not in new_responses:
                yield f"response {code} removed"
            else:
                yield from self.response(code, old_response, new_responses[code])

    def parameters_of(self, item: Schema, operation: Schema, document: Schema) -> Parameters:
        """By place and name (a header's name in any case); the operation's own override the
        path's."""
        found = {}
        for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]:
            parameter = self.schemas.deref(parameter, document)
            name = parameter["name"].lower() if parameter["in"] == "header" else parameter["name"]
            found[parameter["in"], name] = parameter
        return found

    def parameters(self, old: Parameters, new: Parameters) -> Iterator[str]:
        for key, parameter in new.items():
            label = "{} parameter `{}`".format(*key)
            if parameter.get("required") and key not in old:
                yield f"required {label} added"
            elif parameter.get("required") and not old[key].get("required"):
                yield f"{label} is now required"
        for key, parameter in old.items():
            label = "{} parameter `{}`".format(*key)
            if key not in new:
                yield f"{label} removed"
                continue
            old_schema, new_schema = parameter.get("schema", {}), new[key].get("schema", {})
            for problem in self.schemas.compare(old_schema, new_schema, "input"):
                yield f"{label}: {problem}"

    def request_body(self, old: Schema | None, new: Schema | None) -> Iterator[str]:
        old = None if old is None else self.schemas.deref(old, self.old)
        new = None if new is None else self.schemas.deref(new, self.new)
        if new is not None and new.get("required") and not (old or {}).get("required"):
            yield "request body is now required"
        if old is not None and new is None:
            yield "request body removed"
        elif old is not None and new is not None:
            yield from self.content("request body", old, new, "input")

    def response(self, code: str, old: Schema, new: Schema) -> Iterator[str]:
        old, new = self.schemas.deref(old, self.old), self.schemas.deref(new, self.new)
        label = f"response {code}"
        new_headers = {name.lower(): header for name, header in new.get("headers", {}).items()}
        for name, header in old.get("headers", {}).items():
            if name.lower() not in new_headers:
                yield f"{label}: header `{name}` removed"
                continue
            old_schema = self.schemas.deref(header, self.old).get("schema", {})
            new_schema = self.schemas.deref(new_headers[name.lower()], self.new).get("schema", {})
            for problem in self.schemas.compare(old_schema, new_schema, "output"):
                yield f"{label}: header `{name}`: {problem}"
        yield from self.content(label, old, new, "output")

    def content(self, label: str, old: Schema, new: Schema, direction: Direction) -> Iterator[str]:
        new_content = new.get("content", {})
        for media, old_media in old.get("content", {}).items():
            if media not in new_content:
                yield f"{label}: media type {media} removed"
                continue
            old_schema, new_schema = (
                old_media.get("schema", {}),
                new_content[media].get("schema", {}),
            )
            for problem in self.schemas.compare(old_schema, new_schema, direction):
                yield f"{label} ({media}): {problem}"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    old, new = (json.loads(Path(name).read_text(encoding="utf-8")) for name in argv)
    problems = breaking_changes(old, new)
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
