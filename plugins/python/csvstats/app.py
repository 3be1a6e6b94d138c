"""A Moat plugin in Python: `summarize` reads a CSV file in a directory the
operator granted and gives each numeric column's count, sum, mean, minimum
and maximum. Built with componentize-py against wit/plugin.wit (world
`tool-plugin`); Python's own `open` reaches only the granted directories,
and every call runs in a fresh instance."""

import csv
import io
import json
import math

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

# Files larger than this are refused rather than read into memory.
MAX_BYTES = 8 << 20

INPUT = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "An absolute path inside a granted directory."},
        "delimiter": {"type": "string", "minLength": 1, "maxLength": 1, "default": ","},
    },
    "required": ["path"],
    "additionalProperties": False,
}

COLUMN = {
    "type": "object",
    "properties": {name: {"type": "number"} for name in ("count", "sum", "mean", "min", "max")},
    "required": ["count", "sum", "mean", "min", "max"],
}

OUTPUT = {
    "type": "object",
    "properties": {
        "rows": {"type": "integer"},
        "columns": {"type": "object", "additionalProperties": COLUMN},
        "text_columns": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["rows", "columns", "text_columns"],
}


class Refused(Exception):
    """A request the tool answers with an error result, not a failure."""


def number(cell):
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def summarize(path, delimiter=","):
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        # Outside every granted directory, or absent: WASI says which.
        raise Refused(f"{path}: {e.strerror or e}") from None
    if len(data) > MAX_BYTES:
        raise Refused(f"{path}: more than {MAX_BYTES} bytes")
    # newline="" keeps quoted cells that hold line breaks whole.
    reader = csv.DictReader(io.StringIO(data.decode("utf-8", "replace"), newline=""), delimiter=delimiter)
    try:
        rows = list(reader)
    except csv.Error as e:
        raise Refused(f"{path}: not CSV: {e}") from None
    # The header names the columns; cells past it are ignored.
    names = reader.fieldnames or []
    columns, text_columns = {}, []
    for name in names:
        cells = [row.get(name) for row in rows]
        values = [number(cell) for cell in cells if isinstance(cell, str) and cell != ""]
        if values and all(v is not None for v in values):
            total = math.fsum(values)
            if not math.isfinite(total):
                raise Refused(f"{path}: the sum of column {name!r} is too large")
            columns[name] = {
                "count": len(values),
                "sum": total,
                "mean": total / len(values),
                "min": min(values),
                "max": max(values),
            }
        else:
            text_columns.append(name)
    return {"rows": len(rows), "columns": columns, "text_columns": text_columns}


def text(value):
    return types.Content(kind=types.ContentKind_Text(value), annotations=None)


class Tools(exports.Tools):
    def describe(self):
        return [
            types.Tool(
                name="summarize",
                title="CSV summary",
                description="Summarizes the numeric columns of a CSV file: count, sum, mean, minimum and maximum.",
                input_schema=json.dumps(INPUT),
                output_schema=json.dumps(OUTPUT),
                annotations=types.Annotations(
                    read_only=True, destructive=False, idempotent=True, open_world=False
                ),
            )
        ]

    def call(self, name, arguments):
        if name != "summarize":
            raise Err(types.CallError_UnknownTool(name))
        args = json.loads(arguments)
        try:
            summary = summarize(args["path"], args.get("delimiter", ","))
        except Refused as e:
            return types.CallResult(content=[text(str(e))], structured=None, is_error=True)
        said = f"{summary['rows']} rows; numeric columns: {', '.join(summary['columns']) or 'none'}"
        return types.CallResult(content=[text(said)], structured=json.dumps(summary), is_error=False)
