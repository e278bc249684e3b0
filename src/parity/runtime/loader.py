"""Import a project's definitions and collect the entities, views and resolvers they define."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import traceback
from types import ModuleType

from parity.define.access import Role
from parity.define.entities import Entity
from parity.define.features import FeatureView
from parity.define.resolvers import Resolver
from parity.define.windows import WindowView
from parity.errors import DefinitionError, ParityError


def _import(name: str, root: str) -> ModuleType:
    top = name.split(".")[0]
    for loaded in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
        del sys.modules[loaded]  # a fresh import, so edits and other projects are seen
    sys.path.insert(0, root)
    try:
        module = importlib.import_module(name)
        if hasattr(module, "__path__"):
            for info in pkgutil.walk_packages(module.__path__, prefix=name + "."):
                importlib.import_module(info.name)
        return module
    except ParityError:
        raise
    except Exception as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        where = next((f"{f.filename}:{f.lineno}" for f in reversed(frames) if f.filename.startswith(root)), None)
        raise DefinitionError(
            f"importing definitions {name!r} failed: {type(exc).__name__}: {exc}", location=where
        ) from exc
    finally:
        sys.path.remove(root)


def load_definitions(definitions: str, root: str) -> list[object]:
    """Objects defined by the module (or package, or ``.py`` file) ``definitions`` under ``root``."""
    root = os.path.abspath(root)
    name = definitions[:-3].replace("/", ".") if definitions.endswith(".py") else definitions
    module = _import(name, root)
    modules = [m for key, m in sys.modules.items() if key == name or key.startswith(name + ".")]
    found: list[object] = []
    seen: set[int] = set()
    for mod in [module, *modules]:
        for value in vars(mod).values():
            if isinstance(value, (Entity, FeatureView, Resolver, WindowView, Role)) and id(value) not in seen:
                seen.add(id(value))
                found.append(value)
    return found
