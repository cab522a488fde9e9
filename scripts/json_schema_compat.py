"""Breaking changes between two JSON schemas of two OpenAPI documents, seen from one side.

An input (a parameter, a request body) breaks when the new schema refuses a value the old one
accepted; an output (a response) breaks when the new one may hold a value the old one did not
promise, or leaves out what it did. A removed enum value breaks both ways. `$ref`, `allOf`,
`anyOf`/`oneOf`, type lists and `nullable` are followed; several alternatives of one type are
paired by title, then in order.
"""

import json
from collections.abc import Iterator
from typing import Any, Literal

Schema = dict[str, Any]
Direction = Literal["input", "output"]
UPPER = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")
LOWER = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")
UNRESTRICTED = None  # no enum or const: any value of the type


def _type_of(value: Any) -> str:
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
    return kinds.get(type(value), "array" if isinstance(value, list) else "object")


def _family(kind: str) -> str:
    """Integers are numbers: an integer and a number alternative are compared with each other."""
    return "number" if kind == "integer" else kind


def _covers(types: set[str], kind: str) -> bool:
    return kind in types or "any" in types or (kind == "integer" and "number" in types)


def _values(schema: Schema) -> set[str] | None:
    """The values an enum or const allows (as JSON text, so 1 and "1" differ), or UNRESTRICTED."""
    if "const" in schema:
        return {json.dumps(schema["const"])}
    if "enum" in schema:
        return {json.dumps(value) for value in schema["enum"]}
    return UNRESTRICTED


def _tighter(key: str, bound: float, other: float) -> bool:
    return bound < other if key in UPPER else bound > other


def _field(where: str) -> str:
    return f"field `{where}`: " if where else ""


class SchemaDiff:
    def __init__(self, old: Schema, new: Schema) -> None:
        self.old, self.new = old, new  # the documents the `$ref`s point into
        self.active: set[tuple[str, str, Direction]] = set()  # $ref pairs being compared

    def deref(self, node: Schema, document: Schema) -> Schema:
        """The node with its `$ref` followed (its own keywords kept) and its `allOf` merged."""
        seen = set()
        while "$ref" in node and node["$ref"] not in seen:
            seen.add(node["$ref"])
            target: Any = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target | {key: value for key, value in node.items() if key != "$ref"}
        if "allOf" not in node:
            return node
        merged: Schema = {key: value for key, value in node.items() if key != "allOf"}
        for part in node["allOf"]:
            part = self.deref(part, document)
            merged["properties"] = merged.get("properties", {}) | part.get("properties", {})
            merged["required"] = [*merged.get("required", []), *part.get("required", [])]
            merged |= {key: value for key, value in part.items() if key not in merged}
        return merged

    def alternatives(self, node: Schema, document: Schema) -> list[Schema]:
        """The schema as alternatives of one `type` each (`any` when it says nothing)."""
        node = self.deref(node, document)
        options = node.get("anyOf", []) + node.get("oneOf", [])
        if options:
            # The parent's title names the field, not an alternative: titles pair alternatives.
            rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf", "title")}
            return [alt for option in options for alt in self.alternatives(rest | option, document)]
        kinds = node.get("type")
        if isinstance(kinds, list):
            return [node | {"type": kind} for kind in kinds]
        if kinds is None:
            values = node.get("enum", [node["const"]] if "const" in node else [])
            if values:
                kinds = _type_of(values[0])
            elif "properties" in node or "additionalProperties" in node:
                kinds = "object"
            else:
                kinds = "array" if "items" in node else "any"
        nullable = [{"type": "null"}] if node.get("nullable") else []
        return [node | {"type": kinds}, *nullable]

    def compare(self, old: Any, new: Any, direction: Direction, where: str = "") -> Iterator[str]:
        """Each break between the old and the new schema; `where` names the field."""
        # A boolean schema (`true`: anything) is read as an unconstrained one.
        old, new = (node if isinstance(node, dict) else {} for node in (old, new))
        refs = (old.get("$ref", ""), new.get("$ref", ""), direction)
        if refs[0] and refs[1] and refs in self.active:
            return  # a recursive model, already being compared further up
        self.active.add(refs)
        try:
            yield from self._compare(old, new, direction, where)
        finally:
            self.active.discard(refs)

    def _compare(self, old: Schema, new: Schema, direction: Direction, where: str) -> Iterator[str]:
        olds, news = self.alternatives(old, self.old), self.alternatives(new, self.new)
        old_types, new_types = {alt["type"] for alt in olds}, {alt["type"] for alt in news}
        if direction == "input":
            lost = sorted(kind for kind in old_types if not _covers(new_types, kind))
            if lost:
                yield f"{_field(where)}type {', '.join(lost)} no longer accepted"
        else:
            gained = sorted(kind for kind in new_types if not _covers(old_types, kind))
            if gained:
                yield f"{_field(where)}may now be {', '.join(gained)}"
        for old_alt, new_alt in self.pairs(olds, news):
            yield from self.alternative(old_alt, new_alt, direction, where)

    @staticmethod
    def pairs(olds: list[Schema], news: list[Schema]) -> Iterator[tuple[Schema, Schema]]:
        for family in {_family(alt["type"]) for alt in olds}:
            old_kind = [alt for alt in olds if _family(alt["type"]) == family]
            new_kind = [alt for alt in news if _family(alt["type"]) == family]
            by_title = {alt.get("title"): alt for alt in new_kind}
            for index, old_alt in enumerate(old_kind):
                match = by_title.get(old_alt.get("title")) if len(new_kind) > 1 else None
                match = match or (new_kind[index] if index < len(new_kind) else None)
                if match is not None:
                    yield old_alt, match

    def alternative(
        self, old: Schema, new: Schema, direction: Direction, where: str
    ) -> Iterator[str]:
        yield from (_field(where) + problem for problem in self.restrictions(old, new, direction))
        if old["type"] == "object":
            yield from self.properties(old, new, direction, where)
        if old["type"] == "array" and "items" in old:
            yield from self.compare(old["items"], new.get("items", {}), direction, f"{where}[]")

    @staticmethod
    def restrictions(old: Schema, new: Schema, direction: Direction) -> Iterator[str]:
        """Enum values and consts, bounds, patterns and formats."""
        old_values, new_values = _values(old), _values(new)
        if old_values is not UNRESTRICTED and new_values is not UNRESTRICTED:
            if old_values - new_values:
                yield f"enum value {', '.join(sorted(old_values - new_values))} removed"
            if direction == "output" and new_values - old_values:
                yield f"enum value {', '.join(sorted(new_values - old_values))} added"
        elif direction == "input" and new_values is not UNRESTRICTED:
            yield f"now limited to {', '.join(sorted(new_values))}"
        elif direction == "output" and old_values is not UNRESTRICTED:
            yield f"no longer limited to {', '.join(sorted(old_values))}"
        # What narrows an input (a bound added or tightened, a pattern or format set or changed)
        # is what widens an output, read the other way round.
        narrow, wide = (new, old) if direction == "input" else (old, new)
        for key in (*UPPER, *LOWER):
            if key in narrow and (key not in wide or _tighter(key, narrow[key], wide[key])):
                yield f"{key} changed from {old.get(key, 'none')} to {new.get(key, 'none')}"
        for key in ("pattern", "format"):
            if key in narrow and narrow[key] != wide.get(key):
                yield f"{key} changed from {old.get(key, 'none')!r} to {new.get(key, 'none')!r}"

    def properties(
        self, old: Schema, new: Schema, direction: Direction, where: str
    ) -> Iterator[str]:
        prefix = f"{where}." if where else ""
        old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for name, old_field in old_fields.items():
            if name not in new_fields:
                yield f"field `{prefix}{name}` removed"
                continue
            if direction == "output" and name in old_required - new_required:
                yield f"field `{prefix}{name}` is no longer always present"
            yield from self.compare(old_field, new_fields[name], direction, prefix + name)
        if direction == "input":
            for name in sorted(new_required - old_required):
                added = "" if name in old_fields else " (a new field)"
                yield f"field `{prefix}{name}` is now required{added}"
            closed = new.get("additionalProperties") is False
            if closed and old.get("additionalProperties") is not False:
                yield f"{_field(where)}fields beyond the listed ones are now refused"
