"""The human-readable form of a `MemoryPlan` (what `flux2-int8 plan` and `inspect` on a pipeline folder print)."""

from __future__ import annotations

from .plan import GIB, PLACEMENTS, RESERVE_BYTES, MemoryPlan

CARDS_GIB = (24, 16, 12)  # the cards INT8 klein is for: 3090/A10, 4060 Ti/A4000/T4, 3060/4070


def _gib(size: int) -> str:
    return f"{size / GIB:6.2f} GiB"


def format_plan(plan: MemoryPlan) -> str:
    work = plan.workload
    lines = [f"memory plan for {plan.base} at {work.width}x{work.height}, batch {work.batch}, {work.text_tokens} prompt tokens (from headers; activations estimated)"]
    lines.append(f"  {'component':<13}{'weights':>12}{'activations':>14}  source")
    for component in plan.components:
        lines.append(f"  {component.name:<13}{_gib(component.weight_bytes):>12}{_gib(component.activation_bytes):>14}  {component.source}")
    lines.append(f"  {'total':<13}{_gib(plan.weight_bytes):>12}   ({plan.weight_bytes:,} bytes of weights)")
    lines.extend(f"  note: {note}" for note in plan.notes)
    lines.append(f"peak per placement (each with {RESERVE_BYTES / GIB:.0f} GiB for the CUDA context and allocator slack):")
    for placement in PLACEMENTS:
        cards = ", ".join(f"{card} GB" for card in CARDS_GIB if plan.peaks[placement] <= card * GIB) or "none of 24/16/12 GB"
        lines.append(f"  {placement:<11}{_gib(plan.peaks[placement])}   fits: {cards}")
    if plan.gpu_memory is not None:
        lines.append(f"choice for {plan.gpu_memory / GIB:.2f} GiB: {plan.choice or 'nothing fits'}: {plan.reason}")
    return "\n".join(lines)
