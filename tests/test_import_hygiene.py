"""model/ is the core: importing it must not pull in the UI or the training code."""

import subprocess
import sys


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
