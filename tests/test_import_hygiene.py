"""The layers hold: model/ is the core, the SQLite client needs no torch, contracts pass."""

import os
import shutil
import subprocess
import sys
from pathlib import Path


def test_model_imports_neither_textual_nor_tui_nor_finetune() -> None:
    code = (
        "import sys, importlib, pkgutil, model\n"
        "for m in pkgutil.walk_packages(model.__path__, 'model.'):\n"
        "    importlib.import_module(m.name)\n"
        "banned = {'textual', 'tui', 'finetune'}\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in banned)\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_hold() -> None:
    """pyproject's import-linter contracts (layers; the SQLite client without torch)."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint is not None, "import-linter is a dev extra: pip install -e '.[dev]'"
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([lint], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_no_model_starts_without_torch(tmp_path: Path) -> None:
    """`gemma-sql --no-model DB` paints the app and never imports torch or transformers: the
    plain SQLite client starts at once."""
    from model.samples import CHINOOK

    code = (
        "import sys\n"
        "from tui.app import GemmaSqlApp\n"
        "run = GemmaSqlApp.run\n"
        "async def leave(pilot):\n"
        "    await pilot.pause()\n"
        "    print('tables', len(pilot.app.database.schema().tables))\n"
        "    pilot.app.exit()\n"
        "GemmaSqlApp.run = lambda self, **kw: run(self, headless=True, auto_pilot=leave)\n"
        f"sys.argv = ['gemma-sql', '--no-model', {str(CHINOOK)!r}]\n"
        "from tui.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('heavy', sorted({'torch', 'transformers'} & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "GEMMA_SQL_DATA_DIR": str(tmp_path)},
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tables 12" in result.stdout  # 11 and sqlite_sequence
    assert "heavy []" in result.stdout, result.stdout


def test_the_type_checker_passes() -> None:
    """mypy over model/, tui/ and finetune/ (pyproject's [tool.mypy]: its files, its overrides)."""
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    assert mypy is not None, "mypy is a dev extra: pip install -e '.[dev]'"
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([mypy], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
