"""Memory plans from headers alone: what each component will hold on the GPU, and which placement fits.

`plan_memory` reads safetensors headers (local files, or hub range requests) and
configs; nothing here imports torch, so `flux2-int8 plan` answers in a second. The
loaders keep to the same rules (the text-encoder cut in `text_encoder`, the bytes in
`sizes`), and `load_pipeline(..., offload="auto")` places a pipeline by this plan.

May import: errors, variants, formats.
"""

from .plan import PLACEMENTS, ComponentPlan, MemoryPlan, choose_placement, parse_memory, plan_memory
from .report import format_plan

__all__ = ["PLACEMENTS", "ComponentPlan", "MemoryPlan", "choose_placement", "format_plan", "parse_memory", "plan_memory"]
