"""Helpers shared by the core_/wf_ tests, taken from tests/conftest.py.

`from conftest import ...` is ambiguous in this suite (tests/acceptance and tests/web have
their own conftest.py, and without __init__.py files they all import as ``conftest``), so
the root conftest is loaded here once under a name of its own."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "_fairchild_tests_root_conftest"
_PATH = Path(__file__).resolve().parent / "conftest.py"

if _NAME in sys.modules:
    _root = sys.modules[_NAME]
else:
    _spec = importlib.util.spec_from_file_location(_NAME, _PATH)
    assert _spec is not None and _spec.loader is not None
    _root = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _root
    _spec.loader.exec_module(_root)

FAIRCHILD_CMD = _root.FAIRCHILD_CMD
ROOT = _root.ROOT
worker_env = _root.worker_env

__all__ = ["FAIRCHILD_CMD", "ROOT", "worker_env"]
