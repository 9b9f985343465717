"""The benchmark scripts under bench/ (not a package), loaded as modules for the tests that check them. Importable
from every test module: pytest puts tests/ on sys.path for tests/conftest.py."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_bench(relative: str):
    """The module of ``bench/<relative>`` (e.g. ``summary.py``), under a name of its own."""
    name = "bench_" + relative.removesuffix(".py").replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
