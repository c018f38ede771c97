"""Registries: names -> objects, filled by the package and by users' plug-ins.

Every plug-in point (domains, pressure sources, metrics, architectures, proxy kinds) is
one `Registry`. A suite file reaches a user's object in either of two ways:

    plugins = ["mylab.optbench_ext"]    # imported first; it calls SOURCES.register(...)
    domain = "mylab.data:Cifar10Folder" # or names the object by import path directly

An entry may itself be a "module:attr" string, imported on first use, so the package's
registries cost nothing until read (the lazy entries of lm-evaluation-harness). Process
pool and Ray workers import the same plug-ins before computing a cell (runner.py).
Written here because the plug-in points need one uniform rule for names and import
paths; importlib does the work."""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Iterator, Mapping

from optbench.errors import DomainError, first_line


class PluginError(ValueError):
    """A plug-in that cannot be imported or is not what its registry holds."""


def import_object(path: str) -> Any:
    """The object named by "package.module:attr" (attr may be dotted)."""
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise PluginError(f"{path!r}: expected an import path 'module:attr'")
    try:
        obj = _import(module)
    except ImportError as e:
        raise PluginError(f"{path!r}: cannot import module {module!r} ({e}); is it on "
                          "PYTHONPATH or installed?") from None
    except PluginError as e:
        raise PluginError(f"{path!r}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise PluginError(f"{path!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _import(module: str):
    """importlib.import_module, with whatever a user's module does at import other than
    an ImportError (raising anything, calling sys.exit) turned into one PluginError:
    a plug-in that exits must not end optbench with its own exit code, having done
    nothing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise
    except KeyboardInterrupt:
        raise
    except SystemExit as e:
        sys.modules.pop(module, None)
        raise PluginError(f"module {module!r} called sys.exit({e.code!r}) while being imported; "
                          "a plug-in must only define and register things") from None
    except BaseException as e:   # noqa: BLE001 - any error in a user's module is bad input
        sys.modules.pop(module, None)
        raise PluginError(f"importing module {module!r} raised {first_line(e)}; fix the module") from None


def load_plugins(modules: tuple[str, ...] | list[str]) -> None:
    """Import each plug-in module (once); their import registers what they define."""
    for name in modules:
        if name in sys.modules:
            continue
        try:
            _import(name)
        except ImportError as e:
            raise PluginError(f"plugin {name!r}: cannot import it ({e}); is it on PYTHONPATH "
                              "or installed?") from None
        except PluginError as e:
            raise PluginError(f"plugin {name!r}: {e}") from None


def is_import_path(name: str) -> bool:
    return isinstance(name, str) and ":" in name


class Registry(Mapping):
    """A read-only mapping name -> object with `register` for plug-ins. A key that is not
    registered but looks like "module:attr" is imported (and checked) on lookup."""

    def __init__(self, kind: str, check: Callable[[str, Any], Any] | None = None):
        self.kind = kind
        self._entries: dict[str, Any] = {}
        self._checked: set[str] = set()   # entries already validated
        self._check = check   # validates (and may convert) an object on first lookup

    def register(self, name: str, obj: Any = None, *, replace: bool = False):
        """Register `obj` (an object or a lazy "module:attr" string) under `name`; with
        no `obj`, a decorator. Registering a taken name is an error unless `replace`."""
        if obj is None:
            return lambda o: (self.register(name, o, replace=replace), o)[1]
        if name in self._entries and not replace and self._entries[name] is not obj:
            raise PluginError(f"{self.kind} {name!r} is already registered; pass replace=True "
                              "to override it")
        self._entries[name] = obj
        self._checked.discard(name)
        return obj

    def __setitem__(self, name: str, obj: Any) -> None:   # for tests' monkeypatch.setitem
        self.register(name, obj, replace=True)

    def __delitem__(self, name: str) -> None:
        self.unregister(name)

    def unregister(self, name: str) -> None:
        """Remove an entry (a plug-in's tests clean up after themselves with it)."""
        self._entries.pop(name, None)
        self._checked.discard(name)

    def __getitem__(self, name: str) -> Any:
        if name not in self._entries:
            if not is_import_path(name):
                raise KeyError(name)
            self._entries[name] = name   # named by import path: resolved like a lazy entry
        if name not in self._checked:
            obj = self._entries[name]
            if isinstance(obj, str):   # a lazy entry: import it once
                obj = import_object(obj)
            self._entries[name] = self._validated(name, obj)
            self._checked.add(name)
        return self._entries[name]

    def _validated(self, name: str, obj: Any) -> Any:
        if not self._check:
            return obj
        try:
            return self._check(name, obj)
        except (PluginError, DomainError):   # already one line naming the field
            raise
        except Exception as e:   # e.g. a user's Domain whose __init__ raises
            raise PluginError(f"{self.kind} {name!r}: building it raised {first_line(e)}") from None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self._entries:
            return True
        if is_import_path(name):
            try:
                self[name]
            except PluginError:
                return False
            return True
        return False

    def __iter__(self) -> Iterator[str]:
        return iter([k for k in self._entries if not is_import_path(k)])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def lookup(self, name: str, where: str = "") -> Any:
        """The entry, or a PluginError naming `where`, the value and the allowed names."""
        try:
            return self[name]
        except KeyError:
            raise PluginError(f"{where + ': ' if where else ''}unknown {self.kind} {name!r}; allowed: "
                              f"{', '.join(self)}, or an import path 'module:attr'") from None
        except PluginError as e:
            raise PluginError(f"{where + ': ' if where else ''}{e}") from None
