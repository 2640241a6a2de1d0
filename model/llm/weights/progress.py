"""What loading a model puts on the terminal: our own progress lines and one-line errors, and
none of the libraries' warnings or loading bars.

torch and transformers are imported inside functions, as everywhere on the model's path.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Progress = Callable[[str], None]


def say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def quiet_libraries() -> None:
    """Only our own lines on the terminal: no library warnings about what we cannot change.

    bitsandbytes logs, on import, that an optional CPU 4-bit kernel package is missing (we
    never run 4-bit on CPU); transformers and peft warn of deprecations inside their own
    calls. `gemma-sql ask` prints them on stderr before every answer otherwise.
    """
    import logging
    import warnings

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # before anything imports it
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    for library in ("transformers", "peft"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=library)


@contextmanager
def no_loading_bars() -> Iterator[None]:
    """Hide transformers' own tqdm bars while reading local files: they would draw over the
    app's screen, and `progress` already says what happens. Hub download bars stay."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    # The GGUF reader uses plain tqdm, which that switch does not reach.
    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:
        gguf_utils = None
    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None:
        gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar
        if was_enabled:
            hf_logging.enable_progress_bar()
