#!/usr/bin/env python3
"""Writes the client's models and operations from the app's OpenAPI document.

    python generate.py [--spec ../../openapi/openapi.json] [--check]

``preflight_client/models.py`` gets one pydantic model per schema (request bodies refuse unknown
fields; answers keep them), ``preflight_client/_operations.py`` one typed method per operation,
sync and async. The output is formatted with ruff (run this with an interpreter that has it, e.g.
the repo's ``.venv/bin/python``). ``--check`` writes nothing and fails when the files differ
from what the spec gives: tests/test_client.py runs the same comparison.

Types follow the schemas; constraints (patterns, bounds) are left to the server, which answers
a bad value with a 422 naming the field. Money and sizes are ``Decimal``: an answer's decimal
strings and a request's "string or number".
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "preflight_client"
DEFAULT_SPEC = HERE.parents[1] / "openapi" / "openapi.json"

# What the spec cannot say. Each entry is checked against the spec (a name that is gone fails
# the generation), so a renamed operation or field is noticed here.
AUTO_IDS = {
    "FillIn": ("fill_id",),
    "TransferIn": ("transfer_id",),
    "OrderIn": ("client_order_id",),
}
"""Idempotency ids the client fills in when the caller gives none."""
REPLAYS = {"record_fills", "record_transfer", "check"}
"""Writes whose body carries its idempotency ids: a retry is answered with the first result."""
QUESTIONS = {"max_size", "max_scale", "reconcile_snapshot", "subaccount_stress", "book_stress"}
"""POSTs that change nothing: as safe to retry as a GET."""

DECIMAL_PATTERN = r"^-?\d+(\.\d+)?$"
# Names a field would shadow in its class's annotations, and names a method's own code uses.
_TYPE_NAMES = {"Any", "ClassVar", "Decimal", "Field", "Literal", "bool", "dict", "dt", "float"}
_TYPE_NAMES |= {"int", "list", "str", "tuple"}
_METHOD_NAMES = {"self", "body", "path", "query", "models", "dt", "Literal"}


def _ref_name(ref: str) -> str:
    prefix = "#/components/schemas/"
    if not ref.startswith(prefix):
        raise ValueError(f"unsupported $ref {ref}")
    return ref.removeprefix(prefix)


def _union(members: list[str]) -> str:
    unique = list(dict.fromkeys(members))
    if "None" in unique:  # None last, as one writes it
        unique = [m for m in unique if m != "None"] + ["None"]
    return " | ".join(unique)


def _literal(values: list[Any]) -> str:
    return f"Literal[{', '.join(json.dumps(v) for v in values)}]"


def annotation(schema: dict[str, Any], models: str = "") -> str:
    """The Python type of a JSON schema; ``models`` prefixes a reference to a model."""
    if "$ref" in schema:
        return models + _ref_name(schema["$ref"])
    if "anyOf" in schema:
        branches = schema["anyOf"]
        kinds = [b.get("type") for b in branches]
        # A request's decimal is "a string or a number": one Decimal, not str | float. (An
        # answer's decimal string has the decimal pattern; a number beside it stays a float.)
        decimal_in = "number" in kinds and any(
            b.get("type") == "string" and "pattern" not in b for b in branches
        )
        members = []
        for branch in branches:
            if decimal_in and branch.get("type") in ("string", "number"):
                members.append("Decimal")
                continue
            members.append(annotation(branch, models))
        return _union(members)
    if "enum" in schema:
        return _literal(schema["enum"])
    if "const" in schema:
        return _literal([schema["const"]])
    kind = schema.get("type")
    if kind == "string":
        if schema.get("pattern") == DECIMAL_PATTERN:
            return "Decimal"
        return {"date-time": "dt.datetime", "date": "dt.date"}.get(schema.get("format", ""), "str")
    if kind in ("integer", "number", "boolean", "null"):
        return {"integer": "int", "number": "float", "boolean": "bool", "null": "None"}[kind]
    if kind == "array":
        if "prefixItems" in schema:
            return f"tuple[{', '.join(annotation(s, models) for s in schema['prefixItems'])}]"
        return f"list[{annotation(schema.get('items', {}), models)}]"
    if kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            return f"dict[str, {annotation(values, models)}]"
        if "patternProperties" in schema:
            [values] = schema["patternProperties"].values()
            return f"dict[str, {annotation(values, models)}]"
        return "dict[str, Any]"
    if not schema:
        return "Any"
    raise ValueError(f"unsupported schema {schema}")


def _refs(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        found = {_ref_name(schema["$ref"])} if "$ref" in schema else set()
        for value in schema.values():
            found |= _refs(value)
        return found
    if isinstance(schema, list):
        return set().union(*(_refs(item) for item in schema)) if schema else set()
    return set()


def _default(value: Any, kind: str) -> str:
    if kind.startswith("Decimal") and isinstance(value, str | int | float):
        return f'Decimal("{value}")'
    if isinstance(value, list | dict):
        raise ValueError(f"a mutable default {value!r} needs a default_factory")
    return repr(value)


def _docstring(text: str, indent: str) -> list[str]:
    text = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
    lines: list[str] = []
    for n, paragraph in enumerate(paragraphs):
        if n:
            lines.append("")
        lines += textwrap.wrap(paragraph, 96 - len(indent)) or [""]
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    body = [f"{indent}{line}" if line else "" for line in lines[1:]]
    return [f'{indent}"""{lines[0]}', *body, f'{indent}"""']


def _model(name: str, schema: dict[str, Any]) -> list[str]:
    if "properties" not in schema and "enum" in schema:
        return [f"{name} = {annotation(schema)}"]
    if schema.get("type") != "object":
        raise ValueError(f"{name}: unsupported schema")
    if "properties" not in schema:
        # A free-form object (the risk parameters): the JSON object itself, in ``root``.
        lines = [f"class {name}(RootModel[{annotation(schema)}]):"]
        return [*lines, *_docstring(schema.get("description") or name, "    ")]
    request = schema.get("additionalProperties") is False
    lines = [f"class {name}({'RequestModel' if request else 'ResponseModel'}):"]
    if schema.get("description"):
        lines += [*_docstring(schema["description"], "    "), ""]
    auto = AUTO_IDS.get(name, ())
    if auto:
        lines.append(f"    _auto_ids: ClassVar[tuple[str, ...]] = {auto!r}")
    required = set(schema.get("required", []))
    for field, prop in schema["properties"].items():
        if keyword.iskeyword(field) or field in _TYPE_NAMES or field.startswith("model_"):
            raise ValueError(f"{name}.{field}: a field name the models cannot use as is")
        kind = annotation(prop)
        args = []
        if field in auto:
            args.append("default_factory=new_id")
        elif field not in required:
            args.append(_default(prop.get("default"), kind))
        if prop.get("description"):
            args.append(f"description={json.dumps(prop['description'], ensure_ascii=False)}")
        if not args:
            lines.append(f"    {field}: {kind}")
        elif len(args) == 1 and not args[0].startswith(("description=", "default_factory=")):
            lines.append(f"    {field}: {kind} = {args[0]}")
        else:
            lines.append(f"    {field}: {kind} = Field({', '.join(args)})")
    return lines


def _dependencies_first(schemas: dict[str, dict[str, Any]]) -> list[str]:
    """Schema names, each after those it refers to, otherwise alphabetical (the same file from
    the same spec: sets are not iterated)."""
    order: list[str] = []
    visiting: set[str] = set()  # a cycle is cut (the annotations are strings, resolved later)

    def visit(name: str) -> None:
        if name not in order and name not in visiting:
            visiting.add(name)
            for dependency in sorted(_refs(schemas[name])):
                visit(dependency)
            order.append(name)

    for name in sorted(schemas):
        visit(name)
    return order


def render_models(spec: dict[str, Any]) -> str:
    schemas: dict[str, dict[str, Any]] = spec["components"]["schemas"]
    for name, fields in AUTO_IDS.items():
        missing = [f for f in fields if f not in schemas.get(name, {}).get("properties", {})]
        if missing:
            raise ValueError(f"AUTO_IDS names {name}.{missing}, which the spec no longer has")
    blocks = [_model(name, schemas[name]) for name in _dependencies_first(schemas)]
    body = "\n\n\n".join("\n".join(block) for block in blocks)
    header = [
        '"""The API\'s request and response models, generated from openapi/openapi.json by',
        'clients/python/generate.py: do not edit by hand."""',
        "",
        "from __future__ import annotations",
        "",
        "import datetime as dt",
        "from decimal import Decimal",
        "from typing import Any, ClassVar, Literal",
        "",
        "from pydantic import Field, RootModel",
        "",
        "from preflight_client._base import RequestModel, ResponseModel, new_id",
        "",
        "__all__ = [",
        *[f'    "{name}",' for name in sorted(schemas)],
        "]",
    ]
    return "\n".join(header) + "\n\n\n" + body + "\n"


def _operation_name(operation_id: str, path: str, method: str) -> str:
    # FastAPI's operation id: the endpoint's function name, then the path and the method.
    suffix = re.sub(r"\W", "_", path) + "_" + method
    if not operation_id.endswith(suffix):
        raise ValueError(f"{operation_id}: not <function>{suffix}")
    return operation_id.removesuffix(suffix)


def _answer(name: str, operation: dict[str, Any]) -> tuple[str, str, list[int]]:
    """How the answer decodes, its Python type, and the statuses that carry it."""
    decode = kind = None
    statuses = []
    for status, response in sorted(operation["responses"].items()):
        content = response.get("content") or {}
        schemas = [c.get("schema", {}) for c in content.values()]
        if any(s.get("$ref") == "#/components/schemas/Problem" for s in schemas):
            continue
        statuses.append(int(status))
        if "application/json" in content:
            model = _ref_name(content["application/json"]["schema"]["$ref"])
            found = (f"json_of(models.{model})", f"models.{model}")
        elif "application/x-ndjson" in content:
            model = _ref_name(content["application/x-ndjson"]["schema"]["$ref"])
            found = (f"ndjson_of(models.{model})", f"list[models.{model}]")
        elif not content:
            found = ("text", "str")
        else:
            raise ValueError(f"{name}: unsupported answer {list(content)}")
        if decode is not None and (decode, kind) != found:
            raise ValueError(f"{name}: statuses {statuses} answer different bodies")
        decode, kind = found
    if decode is None or kind is None:
        raise ValueError(f"{name}: no answer")
    return decode, kind, statuses


def render_operations(spec: dict[str, Any]) -> str:
    constants: list[str] = []
    sync_methods: list[str] = []
    async_methods: list[str] = []
    names: set[str] = set()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            name = _operation_name(operation["operationId"], path, method)
            names.add(name)
            constant = name.upper()
            decode, kind, statuses = _answer(name, operation)
            if method == "get" or name in QUESTIONS:
                retry = "read"
            elif name in REPLAYS:
                retry = "replay"
            else:
                retry = "never"
            params = operation.get("parameters", [])
            in_path = [p for p in params if p["in"] == "path"]
            in_query = [p for p in params if p["in"] == "query"]
            if any(p["in"] not in ("path", "query") for p in params):
                raise ValueError(f"{name}: a parameter outside path and query")
            clashes = [
                p["name"]
                for p in params
                if keyword.iskeyword(p["name"]) or p["name"] in _METHOD_NAMES
            ]
            if clashes:
                raise ValueError(f"{name}: parameters the methods cannot take as is: {clashes}")
            body_ref = (
                operation.get("requestBody", {})
                .get("content", {})
                .get("application/json", {})
                .get("schema", {})
                .get("$ref")
            )
            if "requestBody" in operation and body_ref is None:
                raise ValueError(f"{name}: a request body that is not a JSON model")
            body_model = None if body_ref is None else "models." + _ref_name(body_ref)

            constants.append(
                f"{constant} = Operation(\n"
                f'    "{name}",\n    "{method.upper()}",\n    "{path}",\n    {decode},\n'
                f'    retry="{retry}",\n    answers=frozenset({{{", ".join(map(str, statuses))}}}),\n'
                + (f"    body={body_model},\n" if body_model else "")
                + ")"
            )

            signature = ["self"]
            for p in in_path:
                signature.append(f"{p['name']}: {annotation(p['schema'], 'models.')}")
            if body_model:
                signature.append(f"body: {body_model}")
            if in_query:
                signature.append("*")
            for p in sorted(in_query, key=lambda p: not p.get("required", False)):
                kind_q = annotation(p["schema"], "models.")
                if p.get("required"):
                    signature.append(f"{p['name']}: {kind_q}")
                else:
                    # Left out of the request when None: the server's default applies.
                    optional = kind_q if kind_q.endswith("| None") else f"{kind_q} | None"
                    signature.append(f"{p['name']}: {optional} = None")
            call = [constant]
            if in_path:
                call.append(
                    "path={" + ", ".join(f'"{p["name"]}": {p["name"]}' for p in in_path) + "}"
                )
            if in_query:
                call.append(
                    "query={" + ", ".join(f'"{p["name"]}": {p["name"]}' for p in in_query) + "}"
                )
            if body_model:
                call.append("body=body")
            doc = f"{method.upper()} {path}"
            if operation.get("description"):
                doc += "\n\n" + operation["description"]
            for methods_out, prefix, wait in (
                (sync_methods, "def", ""),
                (async_methods, "async def", "await "),
            ):
                methods_out.append(
                    "\n".join(
                        [
                            f"    {prefix} {name}({', '.join(signature)}) -> {kind}:",
                            *_docstring(doc, "        "),
                            f"        return {wait}self._call({', '.join(call)})",
                        ]
                    )
                )
    unknown = (REPLAYS | QUESTIONS) - names
    if unknown:
        raise ValueError(f"REPLAYS/QUESTIONS name operations the spec no longer has: {unknown}")

    call_signature = (
        "self, op: Operation[T], *, path: dict[str, str] | None = None,"
        " query: dict[str, object] | None = None, body: BaseModel | None = None"
    )
    header = [
        '"""Every operation of the API as a typed method, sync and async, generated from',
        'openapi/openapi.json by clients/python/generate.py: do not edit by hand."""',
        "",
        "from __future__ import annotations",
        "",
        "import datetime as dt",
        "from typing import Literal, TypeVar",
        "",
        "from pydantic import BaseModel",
        "",
        "from preflight_client import models",
        "from preflight_client._base import Operation, json_of, ndjson_of, text",
        "",
        'T = TypeVar("T")',
    ]
    sync_class = [
        "class SyncOperations:",
        f"    def _call({call_signature}) -> T:",
        "        raise NotImplementedError",
        "",
        "\n\n".join(sync_methods),
    ]
    async_class = [
        "class AsyncOperations:",
        f"    async def _call({call_signature}) -> T:",
        "        raise NotImplementedError",
        "",
        "\n\n".join(async_methods),
    ]
    parts = [
        "\n".join(header),
        "\n\n".join(constants),
        "OPERATIONS: tuple[Operation[object], ...] = ("
        + "".join(f"\n    {name.upper()}," for name in sorted(names))
        + "\n)",
        "\n".join(sync_class),
        "\n".join(async_class),
    ]
    return "\n\n\n".join(parts) + "\n"


def ruff_format(source: str, filename: Path) -> str:
    """``source`` as ``ruff format`` and ``ruff check --fix`` leave it (the repo's settings)."""
    for command in (["check", "--fix-only", "--exit-zero"], ["format"]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", str(filename), "-"],
            input=source,
            capture_output=True,
            text=True,
            cwd=HERE,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ruff {command[0]} failed on {filename.name}:\n{done.stderr}")
        source = done.stdout
    return source


def render(spec: dict[str, Any]) -> dict[Path, str]:
    """Each generated file and its formatted text."""
    sources = {"models.py": render_models(spec), "_operations.py": render_operations(spec)}
    return {PACKAGE / name: ruff_format(source, PACKAGE / name) for name, source in sources.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--check", action="store_true", help="fail if the files would change")
    args = parser.parse_args(argv)
    files = render(json.loads(args.spec.read_text()))
    stale = [path for path, text in files.items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(HERE)} differs from {args.spec}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(files[path])
        print(f"wrote {path.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
