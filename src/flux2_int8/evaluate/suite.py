"""Evaluation suites: the shipped 48-case suite, custom JSONL suites and PartiPrompts TSV files.

One JSON object per line:

    {"id": "t2i-01-turner-seascape", "task": "t2i", "prompt": "A stormy seascape ...", "seed": 101}
    {"id": "edit-01-red-car", "input_prompts": ["A red sports car parked in a garage"], "prompt": "Change the car color ...", "seed": 201}
    {"id": "my-edit", "input_images": ["photos/room.jpg"], "prompt": "Put a cat on the sofa", "seed": 7}

`input_prompts` are generated once by the reference model (input k with seed + 1 + k) and
then edited or composed by every model, so every candidate starts from the same pixels.
`input_images` are image files, relative to the suite file. The task follows from the
number of inputs (none: t2i, one: edit, more: composition); a `task` field, if given,
must agree. The field names and task names are those of the calibration prompt files.

A case's id, seed and content key every image the evaluation writes, so an id must be a
file-name-safe word and appear once per suite.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import Flux2Int8Error
from ..generate.requests import MAX_REFERENCE_IMAGES, MAX_SEED
from ..jsonlines import parse_json_object
from ..nano.grammar import split_scenes
from ..outputs import claim_file, write_text_atomic
from ..textfiles import file_problem, read_text_lines

TASKS = ("t2i", "edit", "composition")
DEFAULT_SUITE = "default"
NANO_SUITE = "nano"  # nano's held-out prompts, two seeds each (see `nano_cases`)
NANO_SEEDS = (0, 1)
_DATA_FILE = "suite.jsonl"
_KEYS = ("id", "task", "prompt", "seed", "input_prompts", "input_images", "note")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Columns of PartiPrompts.tsv (github.com/google-research/parti, Apache-2.0).
PARTI_COLUMNS = ("Prompt", "Category", "Challenge", "Note")


class SuiteError(Flux2Int8Error):
    """A suite file is missing, malformed, or holds a case that cannot be evaluated."""


@dataclass(frozen=True)
class Case:
    """One evaluation case: a prompt, its seed and the inputs an edit or composition starts from."""

    id: str
    prompt: str
    seed: int
    input_prompts: tuple[str, ...] = ()
    input_images: tuple[Path, ...] = ()
    note: str = ""

    @property
    def task(self) -> str:
        return task_for(len(self.input_prompts) + len(self.input_images))

    @property
    def num_inputs(self) -> int:
        return len(self.input_prompts) + len(self.input_images)

    def input_seed(self, index: int) -> int:
        """The seed of generated input `index` (0-based): distinct from the case's own noise."""
        return self.seed + 1 + index

    @property
    def digest(self) -> str:
        """A short hash of everything that decides the case's images, stored in each PNG.

        A cached image whose digest differs (the case was edited under the same id) is made again.
        """
        content = json.dumps([self.prompt, self.seed, list(self.input_prompts), [p.name for p in self.input_images]])
        return hashlib.sha256(content.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Suite:
    """The cases of a suite in file order, and where they came from."""

    name: str
    cases: tuple[Case, ...]

    def by_task(self, task: str) -> list[Case]:
        return [case for case in self.cases if case.task == task]

    @property
    def tasks(self) -> list[str]:
        """The tasks this suite holds, in the canonical order."""
        present = {case.task for case in self.cases}
        return [task for task in TASKS if task in present]


def task_for(num_inputs: int) -> str:
    return TASKS[min(num_inputs, 2)]


def load_suite(spec: str | Path = DEFAULT_SUITE, limit: int | None = None) -> Suite:
    """The shipped suite (`default`), nano's held-out prompts (`nano`), a JSONL file, or a PartiPrompts `.tsv` file.

    `limit` keeps the first N cases of each task (a quick run on the same prompts).
    """
    if str(spec) == DEFAULT_SUITE:
        text = resources.files(__package__).joinpath("data", _DATA_FILE).read_text(encoding="utf-8")
        cases = parse_jsonl(text.splitlines(), f"<shipped {_DATA_FILE}>", Path("."))
        name = DEFAULT_SUITE
    elif str(spec) == NANO_SUITE:
        cases, name = nano_cases(), NANO_SUITE
    else:
        path = Path(spec).expanduser()
        lines = _read_lines(path)
        cases = read_parti_tsv(path, lines) if path.suffix.lower() == ".tsv" else parse_jsonl(lines, str(path), path.parent)
        name = str(path)
    if limit is not None:
        if limit < 1:
            raise SuiteError(f"--limit must be at least 1, got {limit}")
        cases = [case for task in TASKS for case in [c for c in cases if c.task == task][:limit]]
    if not cases:
        raise SuiteError(f"suite {name}: holds no cases")
    return Suite(name, tuple(cases))


def nano_cases() -> list[Case]:
    """Every prompt nano never trained on, once per seed of `NANO_SEEDS` (72 x 2 = 144 cases).

    Seed-major, so `--limit N` takes N different prompts with the first seed.
    """
    _, held_out = split_scenes()
    return [
        Case(f"nano-s{seed}-{scene.prompt.replace(' ', '-')}", scene.prompt, seed)
        for seed in NANO_SEEDS
        for scene in held_out
    ]


def parse_jsonl(lines: Iterable[str], source: str, folder: Path) -> list[Case]:
    """Cases from JSONL lines; `folder` anchors relative `input_images`. Blank lines are skipped."""
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        case = _parse_record(_json_object(line, where), where, folder)
        if case.id in seen:
            raise SuiteError(f"{where}: id {case.id!r} was already used at {seen[case.id]}; ids key the cached images and must be unique")
        seen[case.id] = where
        cases.append(case)
    return cases


def _json_object(line: str, where: str) -> dict[str, Any]:
    return parse_json_object(line, where, SuiteError, _KEYS)


def _parse_record(record: dict[str, Any], where: str, folder: Path) -> Case:
    case_id, prompt, seed, note = record.get("id"), record.get("prompt"), record.get("seed", 0), record.get("note", "")
    if not isinstance(case_id, str) or not _ID.match(case_id):
        raise SuiteError(f"{where}: 'id' must be a word of letters, digits, '.', '_' or '-' (it names image files), got {case_id!r}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise SuiteError(f"{where}: 'prompt' must be a non-empty string")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < MAX_SEED - MAX_REFERENCE_IMAGES - 1:
        raise SuiteError(f"{where}: 'seed' must be an integer in [0, 2**63 - 8), got {seed!r}")
    if not isinstance(note, str):
        raise SuiteError(f"{where}: 'note' must be a string")
    input_prompts = _string_list(record.get("input_prompts", []), "input_prompts", where)
    input_images = tuple(folder / Path(p).expanduser() for p in _string_list(record.get("input_images", []), "input_images", where))
    case = Case(case_id, prompt, seed, input_prompts, input_images, note)
    if case.num_inputs > MAX_REFERENCE_IMAGES:
        raise SuiteError(f"{where}: {case.num_inputs} inputs; FLUX.2 [klein] takes at most {MAX_REFERENCE_IMAGES} reference images")
    task = record.get("task", case.task)
    if task != case.task:
        raise SuiteError(f"{where}: 'task' is {task!r} but the case has {case.num_inputs} input(s), which makes it {case.task!r} (tasks: {', '.join(TASKS)})")
    for path in input_images:
        if not path.is_file():
            raise SuiteError(f"{where}: input image {path}: no such file")
    return case


def _string_list(value: Any, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise SuiteError(f"{where}: '{key}' must be a list of non-empty strings")
    return tuple(value)


def read_parti_tsv(path: Path, lines: Sequence[str] | None = None, categories: Sequence[str] | None = None) -> list[Case]:
    """Text-to-image cases from PartiPrompts.tsv: id `parti-NNNN` and seed = its row number.

    Seeds follow the row, not the position after filtering, so a case keeps its seed
    (and its cached images) whatever subset of categories is chosen.
    """
    lines = _read_lines(path) if lines is None else lines
    rows = list(csv.DictReader(lines, delimiter="\t"))
    if not rows or "Prompt" not in rows[0]:
        raise SuiteError(f"{path}: not a PartiPrompts TSV file (expected a header with the columns {', '.join(PARTI_COLUMNS)})")
    wanted = {c.lower() for c in categories} if categories else None
    cases = []
    for number, row in enumerate(rows, 1):
        prompt = (row.get("Prompt") or "").strip()
        category = (row.get("Category") or "").strip()
        if prompt and (wanted is None or category.lower() in wanted):
            note = " / ".join(part for part in (category, (row.get("Challenge") or "").strip()) if part)
            cases.append(Case(f"parti-{number:04d}", prompt, number, note=note))
    return cases


def convert_parti_prompts(tsv: str | Path, jsonl: str | Path, categories: Sequence[str] | None = None, limit: int | None = None, overwrite: bool = False) -> int:
    """Write PartiPrompts.tsv (or a category subset, or its first `limit` rows) as a suite JSONL file; returns the count.

    An existing `jsonl` is refused unless `overwrite` (a JSONL file carries no mark of who wrote
    it, so it may be a user's hand-made suite); `tsv` itself is always refused.
    """
    claim_file(jsonl, [Path(tsv)], option="the suite file", overwrite=overwrite, overwrite_hint="pass overwrite=True")
    cases = read_parti_tsv(Path(tsv), categories=categories)[:limit]
    write_suite_jsonl(cases, jsonl)
    return len(cases)


def write_suite_jsonl(cases: Sequence[Case], path: str | Path) -> Path:
    """Cases as suite JSONL (inputs given as prompts or as image paths, as they were read)."""
    lines = []
    for case in cases:
        record: dict[str, Any] = {"id": case.id, "task": case.task, "prompt": case.prompt, "seed": case.seed}
        if case.input_prompts:
            record["input_prompts"] = list(case.input_prompts)
        if case.input_images:
            record["input_images"] = [str(p) for p in case.input_images]
        if case.note:
            record["note"] = case.note
        lines.append(json.dumps(record, ensure_ascii=False))
    return write_text_atomic(path, "\n".join(lines) + "\n")


def _read_lines(path: Path) -> list[str]:
    """The suite's lines: a regular UTF-8 file within the text-input bounds (`flux2_int8.textfiles`)."""
    if file_problem(path) == "no such file":
        raise SuiteError(f"suite file {path}: no such file (or pass --suite default for the shipped 48 cases)")
    return read_text_lines(path, "suite file", error=SuiteError)
