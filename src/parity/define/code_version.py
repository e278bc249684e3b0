"""What a resolver's version covers: its code and everything in user code its code reads.

``code_fingerprint(fn)`` is the text hashed into a resolver's version. It holds:

- the function's own source;
- its default arguments and closure values;
- for every global name its code (and nested functions, lambdas and comprehensions) reads, from
  the module it was defined in:

  - a constant (number, string, bytes, bool, None, and tuples, lists, dicts, sets of them): its value;
  - a function or class defined in the project's own code: its source, followed the same way
    (so a helper's helper, and the constants it reads, count too);
  - a module, or a function or class from an installed library or the standard library: its name
    only (upgrading a library does not change versions);
  - any other object: its type and its ``repr`` with memory addresses removed.

Names resolved at call time in other ways (``getattr`` with a computed name, ``eval``, a file or
environment variable the function reads) are not covered. Standard library only.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import sysconfig
import types
from collections.abc import Callable

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_LIBRARY_DIRS = tuple(
    os.path.realpath(p) for p in {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
)
_CONSTANTS = (int, float, complex, str, bytes, bool, type(None))


def _source(obj: object) -> str:
    try:
        return inspect.getsource(obj)  # type: ignore[arg-type]
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        return repr(code.co_code) if code is not None else repr(obj)


def _is_library(obj: object) -> bool:
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    if module is None or path is None:
        return getattr(obj, "__module__", "") in sys.builtin_module_names
    return os.path.realpath(path).startswith(_LIBRARY_DIRS)


def _constant(value: object) -> str | None:
    """A stable text for constant data, or None when ``value`` is not plain data."""
    if isinstance(value, _CONSTANTS):
        return repr(value)
    if isinstance(value, tuple | list | frozenset | set):
        found = [_constant(v) for v in value]
        parts = [p for p in found if p is not None]
        if len(parts) != len(found):
            return None
        if isinstance(value, frozenset | set):
            parts.sort()
        return f"{type(value).__name__}({', '.join(parts)})"
    if isinstance(value, dict):
        items = [(_constant(k), _constant(v)) for k, v in value.items()]
        pairs = sorted((k, v) for k, v in items if k is not None and v is not None)
        if len(pairs) != len(items):
            return None
        return "dict(" + ", ".join(f"{k}: {v}" for k, v in pairs) + ")"
    return None


def _names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(_names(const))
    return names


def code_fingerprint(fn: Callable[..., object]) -> str:
    """The text that stands for ``fn``'s behaviour in its version (see the module docstring)."""
    parts: list[str] = []
    seen: set[int] = set()

    def describe(name: str, value: object) -> None:
        constant = _constant(value)
        if constant is not None:
            parts.append(f"{name} = {constant}")
        elif isinstance(value, types.ModuleType):
            parts.append(f"{name} = module {value.__name__}")
        elif isinstance(value, types.FunctionType | type | types.BuiltinFunctionType | types.MethodType):
            if _is_library(value) or isinstance(value, types.BuiltinFunctionType):
                parts.append(f"{name} = {getattr(value, '__module__', '')}.{getattr(value, '__qualname__', name)}")
            else:
                follow(value, name)
        else:
            parts.append(f"{name} = {type(value).__module__}.{type(value).__qualname__} "
                         f"{_ADDRESS.sub('', repr(value))[:500]}")

    def follow(obj: object, label: str) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        parts.append(f"--- {label}\n{_source(obj)}")
        if isinstance(obj, type):
            for member in vars(obj).values():
                if isinstance(member, types.FunctionType):
                    follow_globals(member)
            return
        if isinstance(obj, types.MethodType):
            obj = obj.__func__
        if not isinstance(obj, types.FunctionType):
            return
        for i, default in enumerate(obj.__defaults__ or ()):
            describe(f"{label}.default[{i}]", default)
        for key, default in sorted((obj.__kwdefaults__ or {}).items()):
            describe(f"{label}.default[{key}]", default)
        for var, cell in zip(obj.__code__.co_freevars, obj.__closure__ or ()):
            try:
                describe(f"{label}.closure[{var}]", cell.cell_contents)
            except ValueError:  # an empty cell
                pass
        follow_globals(obj)

    def follow_globals(fn_: types.FunctionType) -> None:
        scope = fn_.__globals__
        # co_names also holds attribute names (obj.name); only names the module defines are followed
        # (builtins are not in the module's scope, so they count by name, i.e. not at all).
        for name in dict.fromkeys(_names(fn_.__code__)):
            if name in scope:
                describe(f"{fn_.__module__}.{name}", scope[name])

    follow(fn, getattr(fn, "__qualname__", "resolver"))
    return "\n".join(parts)
