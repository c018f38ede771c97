"""The one source signature, source.run(ctx, settings) -> Trajectory: every iterative
built-in source reports per-sample crossings, so its cell has exact equal-proxy points;
observing them changes no output; the runner refuses values a source did not declare or
named like a referee metric."""
from __future__ import annotations

import pytest
import torch

from optbench.domains import get_domain
from optbench.pressure import BUILTIN, SOURCES, Context, Level, Source, Trajectory
from optbench.pressure.crossings import Crossings
from optbench.proxies import as_proxy
from optbench.referees import Referee
from optbench.runner import compute_cell
from optbench.suite import CellSpec

# Small cells of every iterative built-in source: (domain, proxy, n, settings changed).
# gmm2 (2-d vectors) keeps them to seconds; feature_vis needs images.
ITERATIVE = {
    "pixel_ascent": ("gmm2", "proxy_mlp", 20, {"max_steps": 16, "lr": 0.05}),
    "random_search": ("gmm2", "proxy_mlp", 20, {"max_generations": 8, "population": 8}),
    "cma_es": ("gmm2", "proxy_mlp", 20, {"max_generations": 8, "population": 8}),
    "genetic": ("gmm2", "proxy_mlp", 20, {"max_generations": 8, "population": 8}),
    "online_pixel_ascent": ("gmm2", "proxy_mlp", 20, {"max_steps": 16, "lr": 0.05, "retrain_every": 4,
                                                      "retrain_steps": 2}),
    "latent_ascent": ("gmm2", "proxy_mlp", 20, {"max_steps": 16, "lr": 0.1}),
    "generator_finetune": ("gmm2", "proxy_mlp", 20, {"max_steps": 16, "lr": 1e-2, "batch_size": 16,
                                                     "target_class": 1}),
    "diffusion_finetune": ("gmm2", "proxy_mlp", 20, {"generator": "diffusion_mlp", "max_steps": 4, "lr": 1e-3,
                                                     "batch_size": 8, "ddim_steps": 5}),
    "feature_vis": ("mnist", "proxy_cnn", 128, {"max_steps": 4}),
}


def _spec(name: str) -> CellSpec:
    domain, proxy, n, changes = ITERATIVE[name]
    return CellSpec(domain, proxy, name, n, 0, tuple(sorted(SOURCES[name].defaults(**changes).items())))


def test_every_source_declares_whether_it_is_iterative():
    iterative = {name for name in BUILTIN if SOURCES[name].iterative}
    assert iterative == set(ITERATIVE)      # a new iterative built-in source joins the table above
    assert set(BUILTIN) - iterative == {"guidance", "best_of_n", "quantilizer"}


@pytest.mark.parametrize("name", sorted(ITERATIVE))
def test_every_iterative_source_has_exact_equal_proxy_points(name):
    spec = _spec(name)
    result = compute_cell(spec, Referee(spec.domain, spec.proxy))
    points = result.equal_proxy
    assert [p["threshold"] for p in points] == [0.5, 0.9, 0.99]
    assert points[0]["n_reached"] > 0, points          # some sample got to 0.5 and was stopped there
    reached = next(p for p in points if p["n_reached"])
    assert reached["proxy_prob"] >= reached["threshold"] - 1e-6   # the referee reads what the source saw
    # The source's declared values are in every row, and nothing it did not declare.
    for row in result.rows:
        assert set(SOURCES[name].values) <= set(row)


@pytest.mark.parametrize("name", sorted(ITERATIVE))
def test_observing_crossings_changes_no_output(name):
    domain, proxy_name, n, changes = ITERATIVE[name]
    spec = _spec(name)
    proxy = Referee(domain, proxy_name).proxy
    s = spec.settings_dict
    runs = []
    for crossings in (None, Crossings(n)):
        ctx = Context(proxy, get_domain(domain), n, 0, crossings)
        runs.append(list(SOURCES[name].run(ctx, s).levels))
    plain, observed = runs
    assert [lv.knob for lv in plain] == [lv.knob for lv in observed]
    for a, b in zip(plain, observed):
        assert torch.equal(a.x, b.x), (name, a.knob)
        keep = set(a.values) - {"retrain_seconds"}        # wall time, not a number of the run
        assert {k: repr(a.values[k]) for k in keep} == {k: repr(b.values[k]) for k in keep}   # NaN too


def _plugin(values: dict, declared: dict) -> Source:
    def run(ctx, s):
        x, y = ctx.domain.load_split("test")
        x, y = x[:ctx.n], y[:ctx.n]
        return Trajectory(x, (y + 1) % ctx.domain.num_classes, iter([Level(0, x, values=values)]))
    return Source(name="test_values", knob="steps", pressure="none", doc="one level", run=run, values=declared)


@pytest.mark.parametrize("values, declared, message", [
    ({"tries": 1.0}, {}, "undeclared values tries"),
    ({"proxy_prob": 1.0}, {"proxy_prob": "the source's own reading"}, "named like referee metrics: proxy_prob"),
])
def test_the_runner_refuses_undeclared_or_clashing_values(monkeypatch, values, declared, message):
    source = _plugin(values, declared)
    monkeypatch.setitem(SOURCES, source.name, source)
    with pytest.raises(ValueError, match=message):
        compute_cell(CellSpec("gmm2", "proxy_mlp", source.name, 20, 0, ()), Referee("gmm2", "proxy_mlp"))


def test_a_context_reads_its_cell():
    proxy = as_proxy(torch.nn.Linear(2, 4))
    ctx = Context.of(proxy, "gmm2", 5, 3)
    assert ctx.bounds == (-1.0, 1.0) and ctx.domain.num_classes == 4 and ctx.device == torch.device("cpu")
    assert SOURCES["pixel_ascent"].defaults(lr=0.5)["lr"] == 0.5
    with pytest.raises(KeyError, match="declares no setting"):
        SOURCES["pixel_ascent"].defaults(learning_rate=0.5)


def test_the_documented_plugin_source_runs_as_written(monkeypatch):
    """docs/sources.md's example, executed as a plug-in module would be."""
    import re
    import types
    from pathlib import Path
    doc = (Path(__file__).parent.parent / "docs" / "sources.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
    module, registered = types.ModuleType("hill_climb"), {}
    monkeypatch.setattr(SOURCES, "register", lambda name, obj, replace=False: registered.setdefault(name, obj))
    exec(compile(code, "docs/sources.md", "exec"), module.__dict__)
    monkeypatch.undo()
    (source,) = registered.values()
    assert isinstance(source, Source) and source.iterative
    monkeypatch.setitem(SOURCES, source.name, source)   # as the module's own register does, undone after
    spec = CellSpec("gmm2", "proxy_mlp", source.name, 20, 0,
                    tuple(sorted(source.defaults(max_steps=16, sigma=0.2).items())))
    result = compute_cell(spec, Referee("gmm2", "proxy_mlp"))
    assert [r["steps"] for r in result.rows] == [0, 1, 2, 4, 8, 16]
    assert result.rows[-1]["hill_score"] > result.rows[0]["hill_score"]
    assert result.equal_proxy and result.equal_proxy[0]["n_reached"] > 0
