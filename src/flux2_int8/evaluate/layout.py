"""The evaluation folder: where each image, input, trajectory and fidelity record lives, and run.json.

Every file is keyed by (case id, seed, model) and written whole (temporary file, then
rename), so a rerun only adds what is missing, shards can write into one folder, and
merging folders is copying the files one lacks.

    run.json                                 settings and models (name -> transformer checkpoint); each run's date, command, device, versions
    inputs/<case>-s<seed>-<k>.png            edit/composition inputs, made once by the reference model
    images/<model>/<case>-s<seed>.png        every model's output for every case
    trajectories/<case>-s<seed>.safetensors  the reference transformer's recorded calls
    fidelity/<model>/<case>-s<seed>.json     a candidate's velocity error per step
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import CheckpointError, ConfigError
from ..formats.checkpoint import open_checkpoint
from ..limits import GUIDANCE, STEPS, check_side
from ..formats.header import loads_bounded
from ..outputs import write_text_atomic
from ..planning.sources import HUB_FILE  # owner/repo/file.safetensors, as load_pipeline takes it
from .suite import Case

RUN_FILE = "run.json"
RUN_FORMAT = 1
RUNS_KEY = "runs"  # what wrote the folder, one record per run; not a setting (it never decides a pixel)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DIGEST_KEY = "case_digest"


@dataclass(frozen=True)
class ModelSpec:
    """A model under evaluation: its name in reports and file names, and its transformer checkpoint (None: the base's own)."""

    name: str
    transformer: str | None = None


def parse_model_spec(spec: str) -> ModelSpec:
    """`bf16` (the base's own transformer), `NAME=PATH`, or `PATH` (named after the file)."""
    spec = spec.strip()
    if spec.lower() == "bf16":
        return ModelSpec("bf16")
    name, sep, path = spec.partition("=")
    if not sep:
        path, name = spec, Path(spec.rstrip("/")).stem
    if not path:
        raise ConfigError(f"model '{spec}': expected NAME=PATH (a transformer checkpoint), PATH, or bf16")
    if not _NAME.match(name):
        raise ConfigError(f"model '{spec}': the name '{name}' must be a word of letters, digits, '.', '_' or '-' (it names folders); write NAME=PATH")
    return ModelSpec(name, path)


@dataclass(frozen=True)
class RunSettings:
    """What decides the pixels of every image of a run; a folder never mixes two settings."""

    base: str
    width: int = 1024
    height: int = 1024
    dtype: str = "bfloat16"
    steps: int | None = None  # None: the pipeline's default, fixed in run.json once known
    guidance: float | None = None
    reference: str = "bf16"
    activations: str = "auto"  # how INT8 candidates quantize activations (load_transformer's choice)
    models: dict[str, str | None] = field(default_factory=dict)
    loras: list[str] = field(default_factory=list)  # PATH_OR_REPO[:SCALE], applied to every model alike

    def __post_init__(self) -> None:
        """The numbers in `flux2_int8.limits`' ranges (the API refuses what the CLI refuses)."""
        check_side(self.width, "--width", self.base)
        check_side(self.height, "--height", self.base)
        if self.steps is not None:
            STEPS.check(self.steps, "--steps")
        if self.guidance is not None:
            GUIDANCE.check(self.guidance, "--guidance")


class Layout:
    """Paths inside an evaluation folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    @staticmethod
    def _key(case: Case) -> str:
        return f"{case.id}-s{case.seed}"

    def image(self, model: str, case: Case) -> Path:
        return self.root / "images" / model / f"{self._key(case)}.png"

    def input(self, case: Case, index: int) -> Path:
        return self.root / "inputs" / f"{self._key(case)}-{index}.png"

    def inputs(self, case: Case) -> list[Path]:
        """The images an edit or composition starts from: generated inputs or the suite's own files."""
        return [self.input(case, k) for k in range(len(case.input_prompts))] + list(case.input_images)

    def trajectory(self, case: Case) -> Path:
        return self.root / "trajectories" / f"{self._key(case)}.safetensors"

    def fidelity(self, model: str, case: Case) -> Path:
        return self.root / "fidelity" / model / f"{self._key(case)}.json"

    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE


def is_current(path: Path, case: Case) -> bool:
    """Whether a cached PNG exists and was made for this exact case content (its digest chunk)."""
    if not path.is_file():
        return False
    try:
        with Image.open(path) as image:
            return getattr(image, "text", {}).get(DIGEST_KEY) == case.digest
    except OSError:
        return False


def read_fidelity(path: Path) -> list[float]:
    """The per-step velocity errors of one cached fidelity record; a damaged one names the file to delete."""
    try:
        values = loads_bounded(path.read_bytes())["velocity_relative_error"]
        if not isinstance(values, list) or not values or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise ValueError("'velocity_relative_error' is not a list of numbers")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:
        raise ConfigError(f"{path}: damaged cache entry ({type(error).__name__}: {error}); delete this file and rerun eval, which records it again") from None
    return [float(v) for v in values]


def read_settings(path: Path) -> RunSettings | None:
    if not path.is_file():
        return None
    try:
        document = loads_bounded(path.read_bytes())
        if document.pop("format", None) != RUN_FORMAT:
            raise ValueError(f"format is not {RUN_FORMAT}")
        document.pop(RUNS_KEY, None)
        return RunSettings(**document)
    except (OSError, ValueError, TypeError) as error:
        raise ConfigError(f"{path}: not a run file of this version ({error}); use another --out folder") from None


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The runs recorded in run.json (`flux2_int8.provenance.provenance` records), oldest first."""
    try:
        runs = loads_bounded(path.read_bytes()).get(RUNS_KEY, [])
    except (OSError, ValueError, AttributeError):
        return []
    return runs if isinstance(runs, list) else []


def write_settings(path: Path, settings: RunSettings, runs: list[dict[str, Any]] | None = None) -> None:
    """Write run.json atomically: the settings, and the runs (`None`: keep those already recorded)."""
    runs = read_runs(path) if runs is None else runs
    write_text_atomic(path, json.dumps({"format": RUN_FORMAT, **asdict(settings), RUNS_KEY: runs}, indent=2) + "\n")


def record_run(path: Path, settings: RunSettings, run: dict[str, Any]) -> list[dict[str, Any]]:
    """Write run.json with `run` added to its runs; returns them all, oldest first."""
    runs = [*read_runs(path), run]
    write_settings(path, settings, runs)
    return runs


def reconcile(recorded: RunSettings | None, wanted: RunSettings, where: Path) -> RunSettings:
    """The settings a run continues with: the recorded ones, extended by new models; any conflict is an error.

    Unset steps/guidance take the recorded values; a model name already recorded must
    name the same checkpoint, and the reference cannot change (the inputs and
    trajectories are its own).
    """
    if recorded is None:
        return wanted
    for key in ("base", "width", "height", "dtype", "reference", "loras"):
        if getattr(recorded, key) != getattr(wanted, key):
            raise ConfigError(f"{where} was made with {key} = {getattr(recorded, key)!r}, this run asks for {getattr(wanted, key)!r}: use another --out folder, or the same settings")
    for key in ("steps", "guidance"):
        mine, theirs = getattr(wanted, key), getattr(recorded, key)
        if mine is not None and theirs is not None and mine != theirs:
            raise ConfigError(f"{where} was made with {key} = {theirs}, this run asks for {mine}: use another --out folder, or the same settings")
    models = dict(recorded.models)
    for name, transformer in wanted.models.items():
        if name in models and models[name] != transformer:
            raise ConfigError(f"{where}: model '{name}' was made from {models[name] or 'the base transformer'}, now {transformer or 'the base transformer'} is given: pick another name")
        models[name] = transformer
    return replace(
        recorded,
        steps=recorded.steps if recorded.steps is not None else wanted.steps,
        guidance=recorded.guidance if recorded.guidance is not None else wanted.guidance,
        models=models,
    )


def to_json_value(value: Any) -> Any:
    """Floats as JSON allows them: inf/nan (PSNR of identical images) become the strings 'inf'/'nan'."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    if isinstance(value, dict):
        return {key: to_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    return value


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based): the cases at positions index, index + count, ..."""

    index: int = 0
    count: int = 1

    def select(self, cases: Sequence[Case]) -> list[Case]:
        return list(cases[self.index :: self.count])


def parse_shard(spec: str) -> Shard:
    """`i/n` with 0 <= i < n."""
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise ConfigError(f"--shard '{spec}': expected i/n, e.g. 0/4 for the first of four shards") from None
    if not 0 <= index < count:
        raise ConfigError(f"--shard '{spec}': the index must be in 0..n-1 (shards are numbered from 0)")
    return Shard(index, count)


def check_checkpoints(models: Sequence[ModelSpec]) -> None:
    """Check every model's checkpoint before anything is generated: a bad candidate fails in
    a second, not after the whole reference run. Local files have their headers read and
    validated (no weights); hub files are checked when downloaded."""
    for model in models:
        check_checkpoint(model)
        if model.transformer is not None and Path(model.transformer).expanduser().exists():
            open_checkpoint(Path(model.transformer).expanduser())


def check_checkpoint(model: ModelSpec) -> None:
    """Refuse a checkpoint path that is neither a local file/folder nor a hub file (owner/repo/file.safetensors)."""
    spec = model.transformer
    if spec is None or Path(spec).expanduser().exists() or HUB_FILE.match(spec):
        return
    raise CheckpointError(spec, f"no such file or folder (model '{model.name}'; a file on the hub is written owner/repo/file.safetensors)")
