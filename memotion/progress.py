"""Progress bars for long work (data rendering, preprocessing, training, batch scoring).

Interactive terminals get a live bar; logs (CI, ``nohup``, ``kubectl logs``) get one line every
``LOG_INTERVAL_S`` seconds instead of a redraw per step.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

LOG_INTERVAL_S = 10.0


def progress_bar(iterable: Any = None, **kwargs: Any) -> tqdm:
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    return tqdm(iterable, **kwargs)
