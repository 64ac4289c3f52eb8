"""Benchmark loaders: every dataset lands in :class:`steerkit.tasks.schema.Item`.

Each loader takes the hub name by default, or a local copy in the dataset's own schema, and a malformed row raises
or (``on_error="skip"``) is listed on the result's ``.skipped``.
"""

from steerkit.tasks.loaders._common import LoadedItems, to_pil
from steerkit.tasks.loaders.blink import load_blink
from steerkit.tasks.loaders.clevr import count_choices, load_clevr_count, load_superclevr_count
from steerkit.tasks.loaders.cvbench import load_cvbench
from steerkit.tasks.loaders.whatsup import load_whatsup

__all__ = ["LoadedItems", "load_blink", "load_clevr_count", "load_cvbench", "load_superclevr_count",
           "load_whatsup", "count_choices", "to_pil"]
