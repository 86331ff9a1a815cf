"""settings, presets and caps import one way, at module level, and keep every public name where it was."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[2] / "speechai" / "domain"
# policy_types <- settings <- presets, caps: nothing imports back up this list
ORDER = ["policy_types", "settings", "presets", "caps"]


def domain_imports(module: str) -> tuple[list[str], list[int]]:
    """Domain modules ``module`` imports, and the lines of any import not at module level."""
    tree = ast.parse((DOMAIN / f"{module}.py").read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    found, nested = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom | ast.Import):
            if id(node) not in top:
                nested.append(node.lineno)
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found += [n.rsplit(".", 1)[1] for n in names if n.startswith("speechai.domain.")]
    return found, nested


@pytest.mark.parametrize("module", ORDER)
def test_imports_are_at_module_level_and_go_one_way(module: str) -> None:
    imported, nested = domain_imports(module)
    assert nested == [], f"{module}.py imports inside a function or TYPE_CHECKING block at lines {nested}"
    upward = [m for m in imported if m in ORDER and ORDER.index(m) >= ORDER.index(module)]
    assert upward == [], f"{module}.py imports {upward}"


@pytest.mark.parametrize("first", [*ORDER, "decision", "windows"])
def test_each_module_imports_first_in_a_fresh_interpreter(first: str) -> None:
    code = (f"import speechai.domain.{first}\n"
            "from speechai.domain.settings import CallSettings, HourRange, PersonPolicySettings, RetryDelays, "
            "quota_left, merge_call_settings, settings_changes, merge_settings, apply_preset\n"
            "from speechai.domain.presets import Preset, apply_preset as a2, preset_person_policy\n"
            "from speechai.domain.caps import CapVerdict, ContactEvent, PersonPolicy, check_person_caps, "
            "no_answer_days, policy_for\n"
            "from speechai.domain.policy_types import PersonPolicy as P2, Preset as Q2\n"
            "assert PersonPolicy is P2 and Preset is Q2 and apply_preset is a2\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
