"""One line of a user's JSONL file (prompt sets, suites, generation batches) as a dict."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .errors import Flux2Int8Error


def parse_json_object(line: str, where: str, error: type[Flux2Int8Error], allowed_keys: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse `line` as a JSON object; raise `error` naming `where` (file and line) otherwise.

    With `allowed_keys`, an unknown key is refused too: a misspelt key silently ignored
    would run something other than what the user wrote.
    """
    try:
        record = json.loads(line)
    except json.JSONDecodeError as problem:
        raise error(f"{where}: not valid JSON ({problem.msg} at column {problem.colno})") from None
    if not isinstance(record, dict):
        expected = f" with keys {', '.join(allowed_keys)}" if allowed_keys else ' like {"prompt": "..."}'
        raise error(f"{where}: expected a JSON object{expected}")
    unknown = sorted(set(record) - set(allowed_keys)) if allowed_keys else []
    if unknown:
        raise error(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed_keys or ())}")
    return record
