"""Domains: a data set plus its fixed splits and the models that referee it.

`DOMAINS` is a registry (optbench/registry.py): the shipped domains are lazy entries, a
plug-in registers its own, and a suite may name one by import path."""
from __future__ import annotations

from optbench.domains.base import SPLITS, Domain, DomainError
from optbench.registry import Registry


def _instance(name: str, obj) -> Domain:
    """A registered Domain subclass is built once, with no arguments."""
    if isinstance(obj, type) and issubclass(obj, Domain):
        obj = obj()
    if not isinstance(obj, Domain):
        raise DomainError(f"{name!r} is a {type(obj).__name__}, not an optbench Domain "
                          "(subclass optbench.domains.Domain)")
    obj.check()
    if name != obj.name and (obj.name not in DOMAINS or obj.name in _ALIASES):
        # Named by import path ("mylab.data:MyDomain"): its models and nulls look it up by
        # its own name later (the latest such domain of that name wins, never a
        # registered one).
        DOMAINS.register(obj.name, obj, replace=True)
        _ALIASES.add(obj.name)
    return obj


_ALIASES: set[str] = set()   # names registered for domains named by import path


DOMAINS = Registry("domain", check=_instance)
DOMAINS.register("mnist", "optbench.domains.mnist:MNIST")
DOMAINS.register("digits8", "optbench.domains.digits8:Digits8")
DOMAINS.register("gmm2", "optbench.domains.gmm:GMM2")
DOMAINS.register("gmm64", "optbench.domains.gmm:GMM64")
DOMAINS.register("faces", "optbench.domains.faces:Faces")

__all__ = ["DOMAINS", "SPLITS", "Domain", "DomainError", "get_domain", "referee_roles",
           "referee_as_proxy_error"]


def get_domain(name: str | Domain) -> Domain:
    if isinstance(name, Domain):
        return name
    return DOMAINS.lookup(name, "domain")


def referee_roles(name: str | Domain) -> dict[str, list[str]]:
    """Every model of the domain that referees outputs, with its roles. None of them may
    ever be a proxy: a referee the optimizer has seen measures nothing."""
    dom = get_domain(name)
    roles: dict[str, list[str]] = {}
    for judge in dom.judges:
        roles.setdefault(judge, []).append("judge")
    for judge in dom.ensemble:
        roles.setdefault(judge, []).append("judge ensemble member")
    roles.setdefault(dom.feature_net, []).append("feature net of FID/KID/PRDC/C2ST")
    for space in dom.feature_spaces:
        if space != dom.feature_net:
            roles.setdefault(space, []).append("feature space of FID/KID/PRDC/C2ST")
    return roles


def referee_as_proxy_error(name: str | Domain, proxy: str) -> str | None:
    """The one-line reason `proxy` cannot be a proxy of domain `name`, or None."""
    roles = referee_roles(name).get(proxy)
    if not roles:
        return None
    dom = get_domain(name)
    return (f"{proxy!r} is a referee of domain {dom.name!r} ({', '.join(roles)}); the optimizer "
            "must never see a model that judges its outputs")
