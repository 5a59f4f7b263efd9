"""The demo says what it is doing as it goes, and labels its CPU timings as saying nothing of a GPU."""

from __future__ import annotations

from html import escape

from flux2_int8.demo import TASKS, run_demo
from flux2_int8.demo.page import CPU_TIMINGS_NOTE


def test_progress_lines_and_the_cpu_timings_note(tmp_path):
    lines: list[str] = []
    result = run_demo(tmp_path / "demo", steps=2, size=64, device="cpu", progress=lines.append)
    stages = [line for line in lines if line.startswith("[")]
    assert [line[:5] for line in stages] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    tasks = [line for line in lines if not line.startswith("[")]
    assert len(tasks) == len(TASKS)
    for line, task in zip(tasks, result.tasks):
        assert task.task.name in line and f"BF16 {task.bf16_seconds:.2f} s, INT8 {task.int8_seconds:.2f} s" in line
    page = result.index.read_text()
    assert escape(CPU_TIMINGS_NOTE) in page and "not indicative of GPU speed" in CPU_TIMINGS_NOTE
