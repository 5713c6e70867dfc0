"""Progress bars of the Hugging Face libraries, shown or hidden with prunelora's own (a leaf: models and data use it)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def progress_bars(logging: Any, progress: bool) -> Iterator[None]:
    """Inside: a Hugging Face library's own progress bars (its `utils.logging`: transformers', datasets') hidden
    when prunelora's are (progress False, --no-progress); restored after."""
    hide = not progress and logging.is_progress_bar_enabled()
    if hide:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if hide:
            logging.enable_progress_bar()
