"""Domains: a data set plus its fixed splits. One module per domain."""
from __future__ import annotations

from types import ModuleType

from optbench.domains import mnist

DOMAINS: dict[str, ModuleType] = {"mnist": mnist}


def get_domain(name: str) -> ModuleType:
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; allowed: {', '.join(DOMAINS)}")
    return DOMAINS[name]
