"""`import ragloom` stays light, and a missing framework raises MissingExtraError naming the extra."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_ragloom_loads_no_framework() -> None:
    out = _run(
        """
        import json, sys
        import ragloom, ragloom.adapters.integrations, ragloom.recipes.mcp_cli
        from ragloom.adapters.integrations import _async, _calls, _encoders, _hits, _sources, _stops
        heavy = ("langchain_core", "langchain", "llama_index", "mcp", "pydantic", "torch", "transformers")
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
        """
    )
    assert json.loads(out) == []


def test_missing_extras_name_the_extra() -> None:
    out = _run(
        """
        import importlib, importlib.abc, json, sys

        class Block(importlib.abc.MetaPathFinder):
            def __init__(self, name):
                self.name = name
            def find_spec(self, fullname, path=None, target=None):
                if fullname == self.name or fullname.startswith(self.name + "."):
                    raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
                return None

        from ragloom.errors import MissingExtraError
        cases = [
            ("langchain_core", "ragloom.adapters.integrations.langchain"),
            ("llama_index", "ragloom.adapters.integrations.llamaindex"),
            ("mcp", "ragloom.adapters.integrations.mcp_server"),
            ("pydantic", "ragloom.adapters.integrations.tools"),
        ]
        report = {}
        for blocked, target in cases:
            for name in [m for m in sys.modules if m.startswith((blocked, "ragloom.adapters.integrations."))]:
                del sys.modules[name]
            finder = Block(blocked)
            sys.meta_path.insert(0, finder)
            try:
                importlib.import_module(target)
                report[target] = "imported"
            except MissingExtraError as exc:
                report[target] = str(exc)
            finally:
                sys.meta_path.remove(finder)
        print(json.dumps(report))
        """
    )
    report = json.loads(out)
    assert "pip install 'ragloom[langchain]'" in report["ragloom.adapters.integrations.langchain"]
    assert "pip install 'ragloom[llamaindex]'" in report["ragloom.adapters.integrations.llamaindex"]
    assert "pip install 'ragloom[mcp]'" in report["ragloom.adapters.integrations.mcp_server"]
    assert "pip install 'ragloom[tools]'" in report["ragloom.adapters.integrations.tools"]
