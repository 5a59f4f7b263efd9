"""Files, header only: safetensors headers, BFL <-> diffusers keys, detection, the load plan.

Owns: reading headers (`header`), the key table and q/k/v groups (`keys`), what a
checkpoint is and how each stored tensor becomes model tensors (`checkpoint`), the
stored scale shapes (`scales`), structural validation (`validate`), config inference
(`config`), `inspect` (`inspect`), ComfyUI's markers (`comfy`), files that are not
ours to run (`foreign`) and atomic writes (`write`).
May import: errors, variants. Never diffusers or transformers, nor any higher floor.
"""
