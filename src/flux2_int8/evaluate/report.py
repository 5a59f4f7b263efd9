"""metrics.json, report.md and report.html from the metrics document, and the console summary.

The tables come from `tables` (built once as rows), the page from `page`; each file is
written whole (temporary file, then rename) or not at all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..outputs import write_text_atomic
from .layout import to_json_value
from .page import html_report
from .tables import provenance_lines, sections, settings_line, title_of


def write_reports(document: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write metrics.json, report.md and report.html into `out`, each whole or not at all."""
    paths = {"json": out / "metrics.json", "markdown": out / "report.md", "html": out / "report.html"}
    write_text_atomic(paths["json"], json.dumps(to_json_value(document), indent=2) + "\n")
    write_text_atomic(paths["markdown"], markdown(document))
    write_text_atomic(paths["html"], html_report(document))
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
