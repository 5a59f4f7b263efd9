"""`flux2-int8 demo`: BF16 vs INT8 on nano, the small trained klein shipped with the package, written as PNGs and index.html.

May import: everything below it (generate, quantization, evaluate.metrics, nano); never commands.
"""

from .run import TASKS, DemoResult, Task, TaskResult, draw_references, psnr, quantize_nano, run_demo

__all__ = ["TASKS", "DemoResult", "Task", "TaskResult", "draw_references", "psnr", "quantize_nano", "run_demo"]
