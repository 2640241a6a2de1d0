"""`--resume` reads OUT/checkpoint/training.pt as data: a pickle that would run code is refused
in one line, and the code never runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from finetune.checkpoint import CHECKPOINT, load_checkpoint


class Planted:
    """Unpickled, it would create the file `path` (any code could run instead)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, int]]:
        return (os.open, (self.path, os.O_CREAT | os.O_WRONLY))


def test_a_checkpoint_that_runs_code_is_refused_without_running_it(tmp_path: Path) -> None:
    ckpt = tmp_path / CHECKPOINT
    ckpt.mkdir()
    ran = tmp_path / "code-ran"
    torch.save({"optimizer": Planted(str(ran)), "sharded": False, "rng": {}},
               ckpt / "training.pt")
    with pytest.raises(ValueError) as error:
        load_checkpoint(tmp_path, None, None)  # type: ignore[arg-type]
    assert str(error.value).startswith(f"{ckpt / 'training.pt'}: not a checkpoint of ours (")
    assert "\n" not in str(error.value)
    assert not ran.exists()
