"""Domains: a data set plus its fixed splits. One module per domain."""
from __future__ import annotations

from types import ModuleType

from optbench.domains import mnist

DOMAINS: dict[str, ModuleType] = {"mnist": mnist}


def get_domain(name: str) -> ModuleType:
    if name not in DOMAINS:
        raise ValueError(f"unknown domain {name!r}; allowed: {', '.join(DOMAINS)}")
    return DOMAINS[name]


def referee_roles(name: str) -> dict[str, list[str]]:
    """Every model of the domain that referees outputs, with its roles. None of them may
    ever be a proxy: a referee the optimizer has seen measures nothing."""
    dom = get_domain(name)
    roles: dict[str, list[str]] = {}
    for judge in dom.JUDGES:
        roles.setdefault(judge, []).append("judge")
    for judge in dom.ENSEMBLE:
        roles.setdefault(judge, []).append("judge ensemble member")
    roles.setdefault(dom.FEATURE_NET, []).append("feature net of FID/KID/PRDC/C2ST")
    for space in getattr(dom, "FEATURE_SPACES", ()):
        if space != dom.FEATURE_NET:
            roles.setdefault(space, []).append("feature space of FID/KID/PRDC/C2ST")
    return roles


def referee_as_proxy_error(name: str, proxy: str) -> str | None:
    """The one-line reason `proxy` cannot be a proxy of domain `name`, or None."""
    roles = referee_roles(name).get(proxy)
    if not roles:
        return None
    return (f"{proxy!r} is a referee of domain {name!r} ({', '.join(roles)}); the optimizer "
            "must never see a model that judges its outputs")
