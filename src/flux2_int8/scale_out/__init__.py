"""Past one machine: `generate --prompts`, `eval` and `quantize` over a pool of Ray actors.

Built on Ray Data (`map_batches` with a pool of model-holding actors), which does the
scheduling, streaming and retries; this package only says what each actor loads and
does, and keeps the single-process guarantees: the same files in the same places,
byte-identical images, bit-identical checkpoints. Ray is an optional extra
(`pip install 'flux2-int8[ray]'`), imported only when a run asks for it. See
docs/scale-out.md.
"""

from __future__ import annotations

from ..lazy import lazy_getattr

_LAZY_EXPORTS = {
    "Cluster": ".cluster",
    "ClusterOptions": ".cluster",
    "ScaleOutError": ".cluster",
    "connect": ".cluster",
    "PipelineSpec": ".calibrate",
    "cluster_calibrator": ".calibrate",
    "cluster_fan_out": ".evaluate",
    "GenerateSpec": ".generate",
    "generate_on_cluster": ".generate",
}


__getattr__ = lazy_getattr(__name__, globals(), _LAZY_EXPORTS)


__all__ = list(_LAZY_EXPORTS)
