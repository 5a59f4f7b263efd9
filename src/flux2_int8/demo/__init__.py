"""`flux2-int8 demo`: BF16 vs INT8 on the embedded tiny model, written as PNGs and index.html.

May import: everything below it (generate, quantization, evaluate.metrics, tiny); never commands.
"""

from .run import TASKS, DemoResult, Task, TaskResult, draw_references, psnr, quantize_tiny, run_demo

__all__ = ["TASKS", "DemoResult", "Task", "TaskResult", "draw_references", "psnr", "quantize_tiny", "run_demo"]
