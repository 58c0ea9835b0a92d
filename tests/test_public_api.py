"""Each package declares its public API once, in a sorted, complete ``__all__``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest

PACKAGES = ["swarm", "agents", "memory", "discovery"]


def _modules() -> list[types.ModuleType]:
    found = []
    for name in PACKAGES:
        pkg = importlib.import_module(name)
        found.append(pkg)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{name}."):
            if info.name.endswith("__main__"):
                continue
            found.append(importlib.import_module(info.name))
    return found


MODULES = _modules()


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_all_is_sorted_and_names_exist(module: types.ModuleType) -> None:
    exported = getattr(module, "__all__", None)
    if exported is None:
        assert not [n for n, v in vars(module).items() if _is_public_def(module, n, v)], (
            f"{module.__name__} defines public names but has no __all__"
        )
        return
    assert list(exported) == sorted(exported, key=_isort_key), (
        f"{module.__name__}.__all__ is not sorted (constants, classes, then functions)"
    )
    assert len(set(exported)) == len(exported), f"{module.__name__}.__all__ has duplicates"
    for name in exported:
        assert hasattr(module, name), f"{module.__name__}.__all__ names missing {name!r}"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_all_is_complete(module: types.ModuleType) -> None:
    exported = set(getattr(module, "__all__", ()))
    defined = {n for n, v in vars(module).items() if _is_public_def(module, n, v)}
    assert defined <= exported, f"{module.__name__} does not export {sorted(defined - exported)}"


@pytest.mark.parametrize("name", PACKAGES)
def test_package_reexports_public_api_of_its_modules(name: str) -> None:
    """Everything a package's modules export is reachable from the package itself."""
    pkg = importlib.import_module(name)
    missing = []
    for module in MODULES:
        if not module.__name__.startswith(f"{name}.") or module.__name__.count(".") != 1:
            continue
        if module.__name__.split(".")[-1] in getattr(pkg, "_INTERNAL_MODULES", ()):
            continue
        for sym in getattr(module, "__all__", ()):
            if not hasattr(pkg, sym) and not _is_submodule_api(pkg, module, sym):
                missing.append(f"{module.__name__}.{sym}")
    assert not missing, f"{name} does not re-export {missing}"


def _isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: SCREAMING_CASE, then CamelCase, then the rest."""
    if name.isupper() and len(name) > 1:
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


def _is_public_def(module: types.ModuleType, name: str, value: object) -> bool:
    if name.startswith("_"):
        return False
    if inspect.isclass(value) or inspect.isfunction(value):
        return getattr(value, "__module__", None) == module.__name__
    return False


def _is_submodule_api(pkg: types.ModuleType, module: types.ModuleType, sym: str) -> bool:
    # Modules a package deliberately keeps as a namespace (e.g. swarm.constants,
    # swarm.metrics) are public as modules, not re-exported name by name.
    return module.__name__.split(".")[-1] in getattr(pkg, "_NAMESPACE_MODULES", ())
