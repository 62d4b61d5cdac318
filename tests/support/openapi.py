"""Validation against OpenAI's official OpenAPI spec (`tests/data/openai-openapi.yaml`).

The spec is vendored: `tests/data/openai-openapi.SOURCE.md` says where and when it was taken.

The spec is parsed once per process (libyaml) and cached as JSON in the temp dir, keyed by
the yaml's size and mtime, so later processes load it in a fraction of the time.

The spec is OpenAPI 3.1 but still carries a few OpenAPI 3.0 idioms that plain JSON Schema
2020-12 ignores or misreads: `nullable: true`, boolean `exclusiveMinimum`, the 2019-09
`$recursiveRef`, and a `oneOf` with a `discriminator` (OpenAPI picks the branch by the
discriminating property; JSON Schema's `oneOf` fails when a value also fits another branch,
as a typed input message fits both `EasyInputMessage` and `InputMessage`). The validators run
over a copy with those rewritten into 2020-12 terms (the last as `anyOf`); `spec()` returns
the document as published.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "openai-openapi.yaml"

_SPEC_URI = "urn:openai:openapi"
_PATH_PREFIX = "/v1"  # the spec's servers entry is https://api.openai.com/v1
_CACHE_FORMAT = 1
# Keys whose values are data, not schemas: the schema rewrite leaves them alone.
_DATA_KEYS = frozenset({"example", "examples", "default", "enum", "const", "x-oaiMeta"})
# Keys whose values map arbitrary names to schemas.
_NAMED_SCHEMAS = frozenset({"properties", "patternProperties", "$defs"})


class _SpecLoader(yaml.CSafeLoader):
    """libyaml loader that keeps YAML timestamps as the strings they are in JSON."""


def _timestamp_text(loader: yaml.CSafeLoader, node: yaml.Node) -> str:
    return str(node.value)


_SpecLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_text)


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    """The published spec as a dict (shared; do not mutate)."""
    stat = SPEC_PATH.stat()
    cache = (
        Path(tempfile.gettempdir())
        / "omnirelay-spec-cache"
        / f"openai-openapi-{stat.st_size}-{stat.st_mtime_ns}-v{_CACHE_FORMAT}.json"
    )
    try:
        with cache.open("rb") as f:
            cached: dict[str, Any] = json.load(f)
        return cached
    except (OSError, ValueError):
        pass
    with SPEC_PATH.open("rb") as f:
        doc: dict[str, Any] = yaml.load(f, Loader=_SpecLoader)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, cache)
    except OSError:
        pass  # a read-only temp dir only costs speed
    return doc


def _as_json_schema(node: Any, recursive_anchor: str | None = None) -> Any:
    """Rewrite OpenAPI 3.0 idioms in a schema tree into JSON Schema 2020-12."""
    if isinstance(node, list):
        return [_as_json_schema(item, recursive_anchor) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _NAMED_SCHEMAS and isinstance(value, dict):  # names here are not keywords
            out[key] = {name: _as_json_schema(sub, recursive_anchor) for name, sub in value.items()}
        elif key in _DATA_KEYS:
            out[key] = value
        else:
            out[key] = _as_json_schema(value, recursive_anchor)
    if "$recursiveRef" in out and recursive_anchor is not None:
        out["$ref"] = recursive_anchor
        del out["$recursiveRef"]
    exclusive_min = out.get("exclusiveMinimum")
    if isinstance(exclusive_min, bool):
        del out["exclusiveMinimum"]
        if exclusive_min and "minimum" in out:
            out["exclusiveMinimum"] = out.pop("minimum")
    exclusive_max = out.get("exclusiveMaximum")
    if isinstance(exclusive_max, bool):
        del out["exclusiveMaximum"]
        if exclusive_max and "maximum" in out:
            out["exclusiveMaximum"] = out.pop("maximum")
    if "discriminator" in out and isinstance(out.get("oneOf"), list):
        out["anyOf"] = out.pop("oneOf")
    nullable = out.get("nullable")
    if isinstance(nullable, bool):
        del out["nullable"]
        if nullable:
            return {"anyOf": [out, {"type": "null"}]}
    return out


@lru_cache(maxsize=1)
def _registry() -> Registry[Any]:
    doc = spec()
    schemas = {
        name: _as_json_schema(
            schema,
            f"#/components/schemas/{name}"
            if isinstance(schema, dict) and schema.get("$recursiveAnchor")
            else None,
        )
        for name, schema in doc["components"]["schemas"].items()
    }
    components = {k: _as_json_schema(v) for k, v in doc["components"].items() if k != "schemas"}
    converted = {
        "paths": _as_json_schema(doc["paths"]),
        "components": {**components, "schemas": schemas},
    }
    resource = Resource.from_contents(converted, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_SPEC_URI, resource)
    return registry


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@cache
def _validator(pointer: str) -> Draft202012Validator:
    """A compiled validator for the schema at `pointer` (a JSON pointer into the spec)."""
    return Draft202012Validator({"$ref": f"{_SPEC_URI}#{pointer}"}, registry=_registry())


def schema_errors(name: str, instance: Any) -> list[ValidationError]:
    """Every violation of `components/schemas/<name>` by `instance` (empty when valid)."""
    if name not in spec()["components"]["schemas"]:
        raise KeyError(f"no schema named {name!r} in the spec")
    return _errors(f"/components/schemas/{_escape(name)}", instance)


def leaf_error(errors: Iterable[ValidationError]) -> ValidationError | None:
    """The most specific explanation of `errors`, descending into anyOf/oneOf branches.

    A branch is ruled out when it rejects a discriminating value (an enum/const on a direct
    property, like a message's `role`) or the value's type outright; the descent follows the
    branch that got furthest. When every branch rejects the same discriminating property, the
    result is one synthesized `enum` error listing every value the branches accept. When every
    branch rejects only the type, the anyOf/oneOf error itself is returned.
    """
    error: ValidationError | None = best_match(errors)
    while error is not None and error.context:
        branches: dict[Any, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        live = [errs for errs in branches.values() if not _discriminator_errors(errs)]
        if not live:
            return _merged_discriminator_error(error, list(branches.values()))
        shaped = [errs for errs in live if not all(_is_root_type_error(e) for e in errs)]
        if not shaped:
            return error
        chosen = min(shaped, key=lambda errs: (-max(len(e.relative_path) for e in errs), len(errs)))
        error = best_match(chosen)
    return error


def _discriminator_errors(errors: list[ValidationError]) -> list[ValidationError]:
    return [e for e in errors if e.validator in ("enum", "const") and len(e.relative_path) == 1]


def _is_root_type_error(error: ValidationError) -> bool:
    return error.validator == "type" and not error.relative_path


def _merged_discriminator_error(
    parent: ValidationError, branches: list[list[ValidationError]]
) -> ValidationError:
    found = [_discriminator_errors(errs)[0] for errs in branches]
    keys = {tuple(e.relative_path) for e in found}
    if len(keys) != 1:
        return parent
    values: list[Any] = []
    for e in found:
        accepted: Any = e.validator_value
        for value in accepted if e.validator == "enum" else [accepted]:
            if value not in values:
                values.append(value)
    return ValidationError(
        f"{found[0].instance!r} is not one of {values!r}",
        validator="enum",
        validator_value=values,
        instance=found[0].instance,
        path=[*parent.absolute_path, *found[0].relative_path],
    )


@cache
def property_names(name: str) -> frozenset[str]:
    """Every property `components/schemas/<name>` declares, through $ref and allOf."""
    names: set[str] = set()
    pending: list[Any] = [spec()["components"]["schemas"][name]]
    while pending:
        node = pending.pop()
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("$ref"), str):
            pending.append(_resolve(node["$ref"]))
        names.update(node.get("properties", {}))
        pending.extend(node.get("allOf", []))
    return frozenset(names)


def _errors(pointer: str, instance: Any) -> list[ValidationError]:
    return sorted(_validator(pointer).iter_errors(instance), key=lambda e: e.json_path)


def _fail(what: str, errors: list[ValidationError]) -> None:
    if not errors:
        return
    lines = [f"{what}: {len(errors)} schema violation(s)"]
    for error in errors[:20]:
        lines.append(f"  at {error.json_path}: {_describe(error)}")
    if len(errors) > 20:
        lines.append(f"  ... and {len(errors) - 20} more")
    raise AssertionError("\n".join(lines))


def _describe(error: ValidationError) -> str:
    message = error.message if len(error.message) <= 300 else error.message[:300] + "..."
    if error.context:  # anyOf/oneOf: say what the closest branch objected to
        inner = leaf_error([error])
        if inner is not None and inner is not error:
            message += f" (closest branch: {inner.json_path}: {inner.message[:200]})"
    return message


def validate_schema(name: str, instance: Any) -> None:
    """Assert `instance` matches `components/schemas/<name>`."""
    _fail(f"schema {name}", schema_errors(name, instance))


def _match_path(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The spec's path template and operation for a gateway path such as `/v1/models/x`."""
    bare = path.split("?", 1)[0]
    if bare.startswith(_PATH_PREFIX + "/"):
        bare = bare[len(_PATH_PREFIX) :]
    paths: dict[str, Any] = spec()["paths"]
    for template in _templates_for(bare, paths):
        operation = paths[template].get(method.lower())
        if operation is not None:
            return template, operation
    raise AssertionError(f"{method.upper()} {path} is not an operation in the OpenAI spec")


def _templates_for(bare: str, paths: dict[str, Any]) -> Iterator[str]:
    if bare in paths:  # a literal path wins over a template (/models/{model} vs ...)
        yield bare
    for template in paths:
        if "{" in template and _template_regex(template).fullmatch(bare):
            yield template


@cache
def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}/]+\})", template)
    return re.compile(
        "".join("[^/]+" if p.startswith("{") and p.endswith("}") else re.escape(p) for p in parts)
    )


def validate_request(method: str, path: str, instance: Any) -> None:
    """Assert `instance` matches the operation's application/json request body schema."""
    _fail(f"request {method.upper()} {path}", request_errors(method, path, instance))


def request_errors(method: str, path: str, instance: Any) -> list[ValidationError]:
    """Every violation of the operation's application/json request body schema."""
    template, operation = _match_path(method, path)
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        raise AssertionError(f"{method.upper()} {template} takes no application/json body")
    pointer = _operation_pointer(method, template) + "/requestBody/content/application~1json/schema"
    return _errors(pointer, instance)


def validate_response(
    method: str,
    path: str,
    status: int,
    instance: Any,
    content_type: str = "application/json",
) -> None:
    """Assert `instance` matches the documented response body for `status`.

    For `text/event-stream`, `instance` is one parsed event (e.g. a chat.completion.chunk).
    An error status the operation does not document is checked against `ErrorResponse`,
    the shape OpenAI uses for every error.
    """
    template, operation = _match_path(method, path)
    mime = content_type.split(";", 1)[0].strip().lower()
    responses: dict[str, Any] = operation.get("responses", {})
    code = next(
        (c for c in (str(status), f"{str(status)[0]}XX", "default") if c in responses), None
    )
    where = f"response {method.upper()} {path} {status}"
    if code is None:
        if status >= 400:
            _fail(where, schema_errors("ErrorResponse", instance))
            return
        raise AssertionError(f"{where}: status not documented (has {sorted(responses)})")
    response = responses[code]
    pointer = f"{_operation_pointer(method, template)}/responses/{code}"
    ref = response.get("$ref")
    if isinstance(ref, str):  # e.g. #/components/responses/TooManyRequests
        pointer = ref[1:]
        response = _resolve(ref)
    if mime not in response.get("content", {}):
        raise AssertionError(
            f"{where}: content type {mime!r} not documented "
            f"(has {sorted(response.get('content', {}))})"
        )
    _fail(where, _errors(f"{pointer}/content/{_escape(mime)}/schema", instance))


def _operation_pointer(method: str, template: str) -> str:
    return f"/paths/{_escape(template)}/{method.lower()}"


def _resolve(ref: str) -> Any:
    node: Any = spec()
    for token in ref.lstrip("#/").split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


# OpenAI's wording of request errors

_JSON_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
    "null": "null",
}


def _param(path: list[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _one_of(names: list[str]) -> str:
    if len(names) == 1:
        return names[0]
    return "one of " + ", ".join(names[:-1]) + " or " + names[-1]


def openai_wording(error: ValidationError) -> tuple[str, str | None, str | None]:
    """How OpenAI words a request's schema violation: (message, param, code).

    Pass the `leaf_error` of a request's errors; `param` is like "messages[0].content".
    """
    path = list(error.absolute_path)
    param = _param(path) or None
    where = f"'{param}'" if param else "request body"
    validator = error.validator
    value: Any = error.instance
    expected: Any = error.validator_value
    if validator == "required":
        missing = next((k for k in expected if k not in value), expected[0])
        missing_param = _param([*path, missing])
        return (
            f"Missing required parameter: '{missing_param}'.",
            missing_param,
            "missing_required_parameter",
        )
    if validator == "type" or (
        validator in ("anyOf", "oneOf")
        and error.context
        and all(e.validator == "type" and not e.relative_path for e in error.context)
    ):
        types: list[str] = []
        for e in error.context or [error]:
            allowed: Any = e.validator_value
            for t in [allowed] if isinstance(allowed, str) else allowed:
                if _JSON_TYPE_NAMES.get(t, t) not in types:
                    types.append(_JSON_TYPE_NAMES.get(t, t))
        return (
            f"Invalid type for {where}: expected {_one_of(types)}, "
            f"but got {_JSON_TYPE_NAMES[_json_type(value)]} instead.",
            param,
            "invalid_type",
        )
    if validator in ("enum", "const"):
        values = expected if validator == "enum" else [expected]
        supported = ", ".join(repr(v) for v in values[:-1])
        supported = f"{supported}, and {values[-1]!r}" if supported else repr(values[-1])
        return (
            f"Invalid value: {value!r}. Supported values are: {supported}.",
            param,
            "invalid_value",
        )
    kind = "integer" if isinstance(value, int) else "decimal"
    if validator in ("minimum", "exclusiveMinimum"):
        op = ">=" if validator == "minimum" else ">"
        return (
            f"Invalid {where}: {kind} below minimum value. "
            f"Expected a value {op} {expected}, but got {value} instead.",
            param,
            f"{kind}_below_min_value",
        )
    if validator in ("maximum", "exclusiveMaximum"):
        op = "<=" if validator == "maximum" else "<"
        return (
            f"Invalid {where}: {kind} above maximum value. "
            f"Expected a value {op} {expected}, but got {value} instead.",
            param,
            f"{kind}_above_max_value",
        )
    if validator == "minItems" and not value:
        return (
            f"Invalid {where}: empty array. Expected an array with minimum length "
            f"{expected}, but got an empty array instead.",
            param,
            "empty_array",
        )
    return f"Invalid {where}: {error.message}.", param, "invalid_value"
