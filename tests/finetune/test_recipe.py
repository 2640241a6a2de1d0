"""`gemma-sql finetune --recipe FILE`: the shipped adapter's recipe as a file, flags over it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tiny import tiny_gemma
from typer.testing import CliRunner

from finetune.config import TrainConfig
from tui.cli import app

RECIPE = Path(__file__).resolve().parents[2] / "finetune" / "recipes" / "gemma-3-270m-sql.toml"
runner = CliRunner()


def test_the_shipped_recipe_is_the_documented_one() -> None:
    options = {**asdict(TrainConfig()), "recipe": str(RECIPE)}
    cfg = TrainConfig.with_recipe(options, given=set())
    assert (cfg.base, cfg.quant, cfg.lora_r, cfg.lora_alpha, cfg.max_steps, cfg.max_length) == (
        "gemma-3-270m-sql", "none", 32, 64, 900, 1152)
    assert not cfg.gradient_checkpointing and cfg.batch_size * cfg.grad_accum == 4
    docs = (RECIPE.parents[2] / "docs" / "training.md").read_text()
    assert f"RECIPE={RECIPE.relative_to(RECIPE.parents[2])}" in docs
    assert "--recipe $RECIPE" in docs and "RECIPE=(" not in docs


def test_every_recipe_loads_and_names_files_the_repository_has() -> None:
    """A recipe with an unknown key, or naming an adapter or kept file that moved, fails here
    rather than an hour into someone's run (data from `prepare-spider` is made, not shipped)."""
    root = RECIPE.parents[2]
    recipes = sorted(RECIPE.parent.glob("*.toml"))
    assert len(recipes) >= 2
    for path in recipes:
        cfg = TrainConfig.with_recipe({**asdict(TrainConfig()), "recipe": str(path)}, given=set())
        for shipped in (cfg.init_adapter, cfg.kept):
            assert not shipped or (root / shipped).exists(), f"{path.name}: {shipped}"


def test_flags_typed_win_over_the_recipe(tok: Any, rows_file: Path, tmp_path: Path) -> None:
    base = tmp_path / "base"
    tiny_gemma(tok).save_pretrained(base)
    tok.save_pretrained(base)
    out = tmp_path / "run"
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'base = "{base}"\nquant = "none"\ndata = "{rows_file}"\n'
                      f'output = "{out}"\nmax_steps = 5\nlr = 3e-3\nbatch_size = 2\n'
                      "lora_r = 4\nlora_alpha = 8\ngradient_checkpointing = false\n"
                      "save_every = 0\n")
    result = runner.invoke(app, ["finetune", "--recipe", str(recipe), "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "train_config.json").read_text())
    assert config["max_steps"] == 1 and config["lr"] == 3e-3 and config["recipe"] == str(recipe)
    assert json.loads((out / "metrics.json").read_text())["steps"] == 1


def test_a_bad_recipe_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    for text, says in (('lora_rank = 8\n', "'lora_rank' is not a setting"),
                       ('max_steps = "many"\n', "max_steps must be an int"),
                       ("max_steps = \n", "not TOML")):
        recipe = tmp_path / "r.toml"
        recipe.write_text(text)
        result = runner.invoke(app, ["finetune", "--recipe", str(recipe), "--output", str(out)])
        assert result.exit_code == 1 and says in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["finetune", "--recipe", str(tmp_path / "none.toml")])
    assert result.exit_code == 1 and "No such file" in result.output
    assert not out.exists()
