"""Component signatures carry literal defaults (KFP copies only the function's source into the task, so
`config.X` there would not resolve); this keeps them equal to the one source of truth, config.py."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import components
from searchrec import config

COMPONENTS_DIR = Path(components.__file__).parent
MARKED_DEFAULT = re.compile(r"^\s+(\w+): \w+ = (.+),\s+# config\.([A-Z_]+)$", re.MULTILINE)


def _marked_defaults() -> list[tuple[str, str, str]]:
    found = []
    for module in sorted(COMPONENTS_DIR.glob("*.py")):
        found += [(module.name, *m.group(1, 3)) for m in MARKED_DEFAULT.finditer(module.read_text())]
    return found


def test_every_config_default_is_marked():
    assert len(_marked_defaults()) >= 10
    for module in COMPONENTS_DIR.glob("*.py"):
        source = module.read_text()
        assert not re.search(r"^\s+\w+: \w+ = config\.", source, re.MULTILINE), module


@pytest.mark.parametrize("name", components.__all__)
def test_component_defaults_equal_config(name):
    func = getattr(components, name).python_func
    source = inspect.getsource(func)
    for param in inspect.signature(func).parameters.values():
        marker = re.search(rf"^\s+{param.name}: \w+ = .+,\s+# config\.([A-Z_]+)$", source, re.MULTILINE)
        if marker:
            assert param.default == getattr(config, marker.group(1)), (name, param.name)
