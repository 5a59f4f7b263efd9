"""metrics.json, report.md and report.html from the metrics document, and the console summary.

The tables come from `tables` (built once as rows), the page from `page`; each file is
written whole (temporary file, then rename) or not at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .layout import to_json_value
from .page import html_report
from .tables import provenance_lines, sections, settings_line, title_of


def write_reports(document: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write metrics.json, report.md and report.html into `out`, each whole or not at all."""
    paths = {"json": out / "metrics.json", "markdown": out / "report.md", "html": out / "report.html"}
    _write_text(paths["json"], json.dumps(to_json_value(document), indent=2) + "\n")
    _write_text(paths["markdown"], markdown(document))
    _write_text(paths["html"], html_report(document))
    return paths


def markdown(document: dict[str, Any]) -> str:
    lines = [f"# {title_of(document)}", "", settings_line(document), ""] + [f"- {line}" for line in provenance_lines(document)] + [""]
    for title, (header, rows) in sections(document):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    lines += ["## Metrics", ""] + [f"- **{name}**: {text}" for name, text in document["metric_models"].items()] + [""]
    if document["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in document["notes"]] + [""]
    return "\n".join(lines)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


