"""One line of a user's JSONL file (prompt sets, suites, generation batches) as a dict."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .errors import Flux2Int8Error

# No prompt, suite case or calibration record comes near this; a longer line is a wrong file.
MAX_LINE_CHARACTERS = 1_000_000
BOM = "\ufeff"  # a UTF-8 byte-order mark (Windows editors) read as text; never part of a record


def parse_json_object(line: str, where: str, error: type[Flux2Int8Error], allowed_keys: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse `line` as a JSON object; raise `error` naming `where` (file and line) otherwise.

    With `allowed_keys`, an unknown key is refused too: a misspelt key silently ignored
    would run something other than what the user wrote.
    """
    line = line.strip().lstrip(BOM)
    if len(line) > MAX_LINE_CHARACTERS:
        raise error(f"{where}: the line is {len(line)} characters long; at most {MAX_LINE_CHARACTERS} are read")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as problem:
        raise error(f"{where}: not valid JSON ({problem.msg} at column {problem.colno})") from None
    except ValueError as problem:  # e.g. an integer of more than 4300 digits (Python's conversion limit)
        raise error(f"{where}: not valid JSON ({problem})") from None
    except RecursionError:
        raise error(f"{where}: not valid JSON (nested too deeply)") from None
    if not isinstance(record, dict):
        expected = f" with keys {', '.join(allowed_keys)}" if allowed_keys else ' like {"prompt": "..."}'
        raise error(f"{where}: expected a JSON object{expected}")
    unknown = sorted(set(record) - set(allowed_keys)) if allowed_keys else []
    if unknown:
        raise error(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed_keys or ())}")
    return record
