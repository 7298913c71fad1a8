"""A small JSON Schema checker for the subset of draft-07 that schema.json uses.

(type, enum, required, properties, additionalProperties, items, minItems/maxItems, minimum,
maximum, maxLength, pattern, $ref to #/definitions). Written here rather than depending on the
jsonschema package: the subset is small, and its errors must be FormatErrors with a JSON path.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources

from ..errors import FormatError

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


@lru_cache(maxsize=1)
def schema() -> dict:
    """The format's JSON Schema, shipped inside the package."""
    return json.loads(resources.files(__package__).joinpath("schema.json").read_text())


@lru_cache(maxsize=64)
def _regex(pattern: str):
    # JSON Schema patterns are ECMA-262 regexes, whose "$" matches only at the end of the text;
    # Python's also matches before a final newline, which would let "name\n" through.
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern)


def validate(doc, where: str, definition: str | None = None, path: str = "$") -> None:
    """Raise FormatError at the first place ``doc`` breaks the schema (or one of its definitions,
    for values the schema cannot reach, like arrays inside attributes)."""
    root = schema()
    _check(doc, root if definition is None else root["definitions"][definition], root, path, where)


def _check(value, s: dict, root: dict, path: str, where: str) -> None:
    if "$ref" in s:
        s = root["definitions"][s["$ref"].rsplit("/", 1)[1]]

    def fail(problem: str):
        raise FormatError(f"{where}: {path}: {problem}")

    if "enum" in s and value not in s["enum"]:
        fail(f"got {json.dumps(value)[:60]}, expected one of {s['enum']}")
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(_TYPES[t](value) for t in types):
            fail(f"got {type(value).__name__}, expected {' or '.join(types)}")
    if isinstance(value, dict):
        for key in s.get("required", ()):
            if key not in value:
                fail(f"missing required key {key!r}")
        props = s.get("properties", {})
        extra = s.get("additionalProperties", True)
        for key, v in value.items():
            if key in props:
                _check(v, props[key], root, f"{path}.{key}", where)
            elif extra is False:
                fail(f"unknown key {key!r}")
            elif isinstance(extra, dict):
                _check(v, extra, root, f"{path}.{key}", where)
    elif isinstance(value, list):
        if len(value) > s.get("maxItems", len(value)):
            fail(f"{len(value)} items, at most {s['maxItems']} allowed")
        if len(value) < s.get("minItems", 0):
            fail(f"{len(value)} items, at least {s['minItems']} needed")
        if "items" in s:
            for i, v in enumerate(value):
                _check(v, s["items"], root, f"{path}[{i}]", where)
    elif isinstance(value, str):
        if len(value) > s.get("maxLength", len(value)):
            fail(f"string of {len(value)} characters, at most {s['maxLength']} allowed")
        if "pattern" in s and not _regex(s["pattern"]).search(value):
            fail(f"{value[:60]!r} does not match {s['pattern']}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in s and value < s["minimum"]:
            fail(f"{value} is below the minimum {s['minimum']}")
        if "maximum" in s and value > s["maximum"]:
            fail(f"{value} is above the maximum {s['maximum']}")
