"""Pressure sources: ways of applying optimization pressure against a frozen model.

Every source has one signature, `source.run(ctx, settings) -> Trajectory`, and declares
its settings (type, default, allowed values), so suite files are validated before
anything runs; the interface is in pressure/source.py, and each built-in source is
declared beside its algorithm:

    pixel_ascent.py        PIXEL_ASCENT
    feature_vis.py         FEATURE_VIS
    search.py              RANDOM_SEARCH, CMA_ES, GENETIC
    online.py              ONLINE_ASCENT
    guidance.py            GUIDANCE_SOURCE
    diffusion_finetune.py  DIFFUSION_FINETUNE
    gan_sources.py         LATENT_ASCENT, GENERATOR_FINETUNE (generator.py), BEST_OF_N,
                           QUANTILIZER (selection.py)

Sources know nothing about metrics."""
from __future__ import annotations

from optbench.pressure.source import (MAX_LR, MAX_STEPS, TIMESTEPS, Context, Level, Setting, Source,
                                      Trajectory, cached_model)
from optbench.registry import PluginError, Registry

__all__ = ["SOURCES", "BUILTIN", "Context", "Level", "Setting", "Source", "Trajectory", "cached_model",
           "MAX_LR", "MAX_STEPS", "TIMESTEPS"]

# name -> "module:attribute" of its declaration: imported on first lookup, so importing
# the registry loads no source's module.
BUILTIN = {
    "pixel_ascent": "optbench.pressure.pixel_ascent:PIXEL_ASCENT",
    "feature_vis": "optbench.pressure.feature_vis:FEATURE_VIS",
    "random_search": "optbench.pressure.search:RANDOM_SEARCH",
    "cma_es": "optbench.pressure.search:CMA_ES",
    "genetic": "optbench.pressure.search:GENETIC",
    "online_pixel_ascent": "optbench.pressure.online:ONLINE_ASCENT",
    "guidance": "optbench.pressure.guidance:GUIDANCE_SOURCE",
    "diffusion_finetune": "optbench.pressure.diffusion_finetune:DIFFUSION_FINETUNE",
    "latent_ascent": "optbench.pressure.gan_sources:LATENT_ASCENT",
    "generator_finetune": "optbench.pressure.gan_sources:GENERATOR_FINETUNE",
    "best_of_n": "optbench.pressure.gan_sources:BEST_OF_N",
    "quantilizer": "optbench.pressure.gan_sources:QUANTILIZER",
}


def _source(name: str, obj) -> Source:
    if not isinstance(obj, Source):
        raise PluginError(f"{name!r} is a {type(obj).__name__}, not an optbench.pressure.Source")
    return obj


# Pressure sources by name; a plug-in adds one with SOURCES.register(name, Source(...)),
# and a suite may name one by import path ("mylab.search:ANNEALING").
SOURCES = Registry("pressure source", check=_source)
for _name, _path in BUILTIN.items():
    SOURCES.register(_name, _path)


def __getattr__(name: str):
    """The built-in declarations by their names (PIXEL_ASCENT, ...), imported on first use."""
    for path in BUILTIN.values():
        module, attr = path.split(":")
        if attr == name:
            import importlib
            return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'optbench.pressure' has no attribute {name!r}")
