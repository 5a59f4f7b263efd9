"""The klein transformer's input channels: which rows make them, and how wide they are.

Two floors need these facts: `quantization` (SmoothQuant divides a channel by s and folds
the factor into the rows that make it) and `nano` (nano-outliers folds a factor the other
way, to plant outliers). So they live here, below both, and each imports them downward.
May import: nothing of the package (torch only).
"""

from .folding import FoldGroup, Producer, fold, foldable_consumers, foldable_groups
from .ranges import ChannelRangeObserver, running_channel_amax

__all__ = ["ChannelRangeObserver", "FoldGroup", "Producer", "fold", "foldable_consumers", "foldable_groups", "running_channel_amax"]
