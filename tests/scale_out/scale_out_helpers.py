"""Helpers of the Ray tests (a module of its own: `from conftest import` depends on collection order)."""

from __future__ import annotations

from pathlib import Path

SIZE, STEPS = 64, 2
# Four cases: two t2i (so a set has an FID), an edit and a composition with generated inputs.
SUITE = [
    {"id": "t2i-cube", "prompt": "A red cube on a blue table", "seed": 11},
    {"id": "t2i-cat", "prompt": "A green cat on a sofa", "seed": 14},
    {"id": "edit-car", "input_prompts": ["A red car in a garage"], "prompt": "Make the car yellow", "seed": 12},
    {"id": "composition-cat", "input_prompts": ["A cat", "A green sofa"], "prompt": "Put the cat on the sofa", "seed": 13},
]


def folder_bytes(root: Path, folders=("images", "inputs", "trajectories", "fidelity")) -> dict[str, bytes]:
    """Every keyed file of an evaluation folder, by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for folder in folders for p in sorted((root / folder).rglob("*")) if p.is_file()}
