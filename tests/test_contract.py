"""Contract tests of the plug-in points: a domain, models, a pressure source and a metric,
all defined in this file (nothing of MNIST), run from a suite file through parsing, all
three executors, summaries, plots and the report.

This module is also the plug-in: the suites name it in `plugins`, so spawned pool
workers and Ray workers import it and get the same registrations."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from optbench.domains import DOMAINS, Domain
from optbench.pressure import SOURCES, Level, Setting, Source, Trajectory
from optbench.metrics import METRICS, Metric

SHAPE, CLASSES, BOUNDS = (3, 8, 8), 4, (-1.0, 1.0)


class Blobs(Domain):
    """Four classes of 3x8x8 'images' in [-1, 1]: a per-class colour pattern plus noise."""
    name = "contract_blobs"
    num_classes, shape, bounds = CLASSES, SHAPE, BOUNDS
    splits = {"proxy_train": 8, "judge_train": 8, "generator_train": 10, "test": 10, "reference": 14}
    split_seed = 7
    default_proxy = "user_proxy"
    judges = ("judge_a", "judge_b")
    ensemble = ("judge_a", "judge_b")
    feature_spaces = ("judge_a", "judge_b")

    def load_pool(self):
        g = np.random.default_rng(0)
        centers = g.uniform(-0.6, 0.6, (CLASSES, *SHAPE))
        y = np.repeat(np.arange(CLASSES), 50)
        x = np.clip(centers[y] + 0.25 * g.standard_normal((len(y), *SHAPE)), -1, 1)
        return x.astype(np.float32), y


class CentroidNet(nn.Module):
    """A user's classifier: a fixed random projection, logits = -squared distance to the
    class centroids in the projected space; `features` is the projection."""

    def __init__(self, in_dim: int = math.prod(SHAPE), dim: int = 12, classes: int = CLASSES):
        super().__init__()
        self.proj = nn.Parameter(torch.zeros(in_dim, dim))
        self.centroids = nn.Parameter(torch.zeros(classes, dim))

    def features(self, x):
        return x.flatten(1) @ self.proj

    def forward(self, x):
        return -torch.cdist(self.features(x), self.centroids) ** 2 / self.proj.shape[1]


def _fit(dom: Domain, seed: int, split: str) -> dict[str, torch.Tensor]:
    x, y = dom.load_split(split)
    proj = torch.randn(math.prod(dom.shape), 12, generator=torch.Generator().manual_seed(seed)) / 8
    f = x.flatten(1) @ proj
    return {"proj": proj, "centroids": torch.stack([f[y == c].mean(0) for c in range(dom.num_classes)])}


class Vectors(Domain):
    """Plain 2-d vectors, three Gaussian classes: no image shape at all."""
    name = "contract_vectors"
    num_classes, shape, bounds = 3, (2,), (-3.0, 3.0)
    splits = {"proxy_train": 10, "judge_train": 10, "test": 10, "reference": 14}
    default_proxy, judges, ensemble, feature_spaces = "user_proxy", ("judge_a",), ("judge_a",), ("judge_a",)

    def load_pool(self):
        g = np.random.default_rng(1)
        y = np.repeat(np.arange(3), 50)
        return (np.array([[-1.5, 0], [1.5, 0], [0, 1.5]])[y] + 0.4 * g.standard_normal((150, 2))).astype(np.float32), y


def _model_folder(dom: Domain) -> Path:
    """The user's weights, written once (deterministic) where every worker finds them."""
    folder = Path(os.environ.get("OPTBENCH_CACHE") or tempfile.gettempdir()) / "contract-models" / dom.name
    folder.mkdir(parents=True, exist_ok=True)
    for name, seed, split in (("user_proxy", 1, "proxy_train"), ("judge_a", 2, "judge_train"),
                              ("judge_b", 3, "judge_train")):
        file = folder / f"{name}.safetensors"
        if not file.exists():
            tmp = file.with_suffix(f".{os.getpid()}.tmp")
            save_file(_fit(dom, seed, split), str(tmp))
            os.replace(tmp, file)
    return folder


for _dom in (Blobs, Vectors):
    _dom.checkpoints = _model_folder(_dom())
    _dom.models = {name: {"arch": "test_contract:CentroidNet", "file": f"{name}.safetensors",
                          "arch_kwargs": {"in_dim": math.prod(_dom.shape), "classes": _dom.num_classes}}
                   for name in ("user_proxy", "judge_a", "judge_b")}
    DOMAINS.register(_dom.name, _dom, replace=True)


def _random_search(ctx, s):
    """A gradient-free optimizer: at level k, the best of k random perturbations of
    each start by the proxy's score (one generator per sample)."""
    dom, proxy, n, seed = ctx.domain, ctx.proxy, ctx.n, ctx.seed
    start, _ = dom.load_split("test")
    start = start[torch.arange(n) % len(start)]
    target = torch.arange(n) % dom.num_classes

    def levels():
        for k in (1, 4, 16):
            best, best_score = start.clone(), torch.full((n,), -math.inf)
            gens = [torch.Generator().manual_seed(seed * 100_003 + i) for i in range(n)]
            for _ in range(k):
                cand = (start + s["sigma"] * torch.stack([torch.randn(dom.shape, generator=g) for g in gens])).clamp(*dom.bounds)
                with torch.no_grad():
                    score = proxy.score(proxy(cand), target, "logit")
                better = score > best_score
                best[better], best_score[better] = cand[better], score[better]
            yield Level(k, best, values={"best_score": float(best_score.mean())})
    return Trajectory(start, target, levels())


SEARCH = Source(
    name="contract_random_search", knob="tries", pressure="tries", doc="best of k random perturbations",
    settings={"sigma": Setting(float, 0.3, minimum=0.0, doc="perturbation scale")},
    values={"best_score": "mean proxy logit of the best try"},
    run=_random_search)
SOURCES.register("contract_random_search", SEARCH, replace=True)

METRICS.register("contract_mean_abs", Metric(
    "contract_mean_abs", "mean absolute value of the outputs", panel="mean |x| (plug-in)",
    compute=lambda b: float(b.x.abs().mean()), at_max=True,
    domains=("contract_blobs", "contract_vectors")), replace=True)


@pytest.fixture(scope="module", autouse=True)
def _unregister_after_this_module():
    """Registered when pytest imports this module, so in every test process: `domains`
    keeps the metric off other tests' MNIST cells, and this removes it once this
    module's tests are done."""
    yield
    METRICS.unregister("contract_mean_abs")
    SOURCES.unregister("contract_random_search")


SUITE = f"""
name = "contract"
seeds = [0, 1]
pythonpath = ["{Path(__file__).parent}"]
plugins = ["test_contract"]

[[cell]]
label = "random search"
domain = "contract_blobs"
source = "contract_random_search"
n_samples = 16
settings = {{ sigma = [0.3] }}

[[cell]]
label = "pixel ascent"
domain = "contract_blobs"
proxy = "user_proxy"
source = "pixel_ascent"
n_samples = 16
settings = {{ start = "noise", max_steps = 4, lr = 0.1 }}
"""


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    from optbench.runner import run_suite
    from optbench.suite import parse_suite
    out = tmp_path_factory.mktemp("contract")
    suite = parse_suite(SUITE)
    counts = run_suite(suite, out, device="cpu", log=lambda *_: None)
    assert counts == {**counts, "computed": 4, "failed": 0}, counts
    return suite, out / "contract"


def test_suite_parses_plugins_into_cells_with_their_hashes(local_run):
    suite, _ = local_run
    cell = suite.cells[0]
    assert cell.domain == "contract_blobs" and cell.proxy == "user_proxy"
    versions = cell.versions()
    from optbench.model_files import sha256_of
    weights = Blobs.checkpoints / "user_proxy.safetensors"
    assert versions["checkpoints"]["user_proxy"] == sha256_of(weights)[:16]
    assert versions["data"] == DOMAINS["contract_blobs"].fingerprint()


def test_cells_hold_the_plugin_metric_and_respect_the_domain(local_run):
    suite, folder = local_run
    rows = json.loads((folder / suite.cells[2].cell_id / "curve.json").read_text())["rows"]
    assert [r["steps"] for r in rows] == [0, 1, 2, 4]
    x = torch.rand(5, *SHAPE) * 2 - 1      # the metric recomputed on its own terms
    assert METRICS["contract_mean_abs"].compute(type("B", (), {"x": x})) == pytest.approx(float(x.abs().mean()))
    from safetensors.torch import load_file
    snaps = load_file(str(folder / suite.cells[2].cell_id / "snapshots.safetensors"))["snapshots"]
    assert snaps.shape[2:] == SHAPE
    assert float(snaps.min()) >= -1 and float(snaps.max()) <= 1 and float(snaps.min()) < 0  # bounds, not [0, 1]
    mean_abs = [r["contract_mean_abs"] for r in rows]
    assert all(0 < v <= 1 for v in mean_abs)
    # pixel ascent moved toward the proxy's targets
    assert rows[-1]["proxy_prob"] > rows[0]["proxy_prob"]
    search = json.loads((folder / suite.cells[0].cell_id / "curve.json").read_text())["rows"]
    assert [r["tries"] for r in search] == [1, 4, 16]
    assert search[-1]["proxy_logit"] >= search[0]["proxy_logit"]   # best of more tries scores higher
    assert search[-1]["best_score"] >= search[0]["best_score"]      # the source's own declared value
    spec = json.loads((folder / suite.cells[0].cell_id / "spec.json").read_text())
    assert spec["source_values"] == ["best_score"] and spec["goodhart_law"] == "rl_kl"


def test_process_pool_and_ray_give_the_same_curves(local_run, tmp_path, monkeypatch):
    from optbench.runner import run_suite
    from optbench.suite import parse_suite
    suite, folder = local_run
    runs = {"pool": dict(workers=2)}
    if __import__("importlib").util.find_spec("ray"):
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        runs["ray"] = dict(executor="ray", workers=2)
    one_seed = parse_suite(SUITE.replace("seeds = [0, 1]", "seeds = [1]"))   # 2 cells, one per worker
    for name, kwargs in runs.items():
        counts = run_suite(one_seed, tmp_path / name, log=lambda *_: None, **kwargs)
        assert counts["computed"] == 2 and counts["failed"] == 0, (name, counts)
        for spec in one_seed.cells:
            ours = json.loads((tmp_path / name / "contract" / spec.cell_id / "curve.json").read_text())
            assert ours == json.loads((folder / spec.cell_id / "curve.json").read_text()), name


def test_summaries_plots_and_report_show_the_plugins(local_run, tmp_path):
    import shutil

    from PIL import Image

    from optbench.report import write_suite_outputs
    _, folder = local_run
    copy = tmp_path / "contract"
    shutil.copytree(folder, copy)
    write_suite_outputs(copy)
    summary = (copy / "summary.md").read_text()
    assert "random search" in summary and "pixel ascent" in summary
    assert "Values of the source itself (contract_random_search)" in summary and "best_score" in summary
    assert "More metrics at the highest pressure" in summary and "contract_mean_abs" in summary
    csv = (copy / "curves.csv").read_text().splitlines()
    assert "contract_mean_abs" in csv[0].split(",") and len(csv) == 1 + 2 * 3 + 2 * 4
    from optbench.report.plots import curve_panels
    assert ("contract_mean_abs", "mean |x| (plug-in)", "linear") in curve_panels()
    assert len(curve_panels()) == 11
    curves = sorted((copy / "plots").glob("*curves*.png"))
    assert curves, sorted(p.name for p in (copy / "plots").iterdir())
    with Image.open(curves[0]) as im:   # 11 panels: three rows of five, 3.6 in each at 110 dpi
        assert im.size[1] == round(3 * 3.6 * 110)
    html = (copy / "report.html").read_text()
    assert "contract_mean_abs" in html or "random search" in html
    grid = next(copy.glob("*/grid.png"))
    assert grid.stat().st_size > 0


def test_a_vector_domain_runs_and_its_grid_is_a_scatter(tmp_path):
    from PIL import Image

    from optbench.runner import run_suite
    from optbench.suite import parse_suite
    text = f"""
name = "vectors"
pythonpath = ["{Path(__file__).parent}"]
plugins = ["test_contract"]
[[cell]]
domain = "contract_vectors"
source = "pixel_ascent"
n_samples = 12
settings = {{ start = "real", max_steps = 8, lr = 0.2 }}

[[cell]]
label = "a source named by import path only"
domain = "contract_vectors"
source = "test_contract:SEARCH"
n_samples = 12
"""
    suite = parse_suite(text)
    assert run_suite(suite, tmp_path, log=lambda *_: None)["computed"] == 2
    by_path = json.loads((tmp_path / "vectors" / suite.cells[1].cell_id / "curve.json").read_text())["rows"]
    assert [r["tries"] for r in by_path] == [1, 4, 16]
    folder = tmp_path / "vectors" / suite.cells[0].cell_id
    rows = json.loads((folder / "curve.json").read_text())["rows"]
    assert rows[-1]["proxy_prob"] > rows[0]["proxy_prob"] and rows[-1]["out_of_range"] == 0
    assert json.loads((folder / "spec.json").read_text())["bounds"] == [-3.0, 3.0]
    with Image.open(folder / "grid.png") as im:   # 5 levels in one row of scatter panels
        assert im.size[0] > im.size[1]


def test_plugin_that_cannot_be_imported_gets_one_clear_line():
    from optbench.suite import SuiteError, parse_suite
    bad = SUITE.replace('plugins = ["test_contract"]', 'plugins = ["no_such_plugin_module"]')
    with pytest.raises(SuiteError, match=r"plugin 'no_such_plugin_module': cannot import it"):
        parse_suite(bad)
    bad = SUITE.replace('source = "contract_random_search"', 'source = "test_contract:NOT_THERE"')
    with pytest.raises(SuiteError, match=r"cell\[0\]\.source: .*has no attribute 'NOT_THERE'"):
        parse_suite(bad)


def test_pickle_weights_are_refused_with_a_conversion_line(tmp_path):
    from optbench.errors import CheckpointError

    class Pickled(Blobs):
        name = "contract_pickled"
        checkpoints = tmp_path
        models = {"user_proxy": {"arch": "test_contract:CentroidNet", "file": "proxy.pt"}}
    (tmp_path / "proxy.pt").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match=r"proxy\.pt: a pickle-based file is never loaded.*save_file\(torch\.load"):
        Pickled().declared_models()


def test_torchscript_models_load_and_a_pickle_in_disguise_is_refused(tmp_path):
    from optbench.models.checkpoints import load_model
    from optbench.errors import CheckpointError
    net = CentroidNet()
    net.load_state_dict(_fit(Blobs(), 1, "proxy_train"))
    torch.jit.script(net).save(str(tmp_path / "proxy.ts"))
    torch.save(net.state_dict(), str(tmp_path / "fake.ts"))   # a pickle, whatever its name

    class Scripted(Blobs):
        name = "contract_scripted"
        checkpoints = tmp_path
        models = {"ts_proxy": {"torchscript": "proxy.ts", "kind": "classifier"},
                  "fake": {"torchscript": "fake.ts"}}
    DOMAINS.register(Scripted.name, Scripted, replace=True)
    try:
        loaded = load_model(Scripted.name, "ts_proxy")
        x = Blobs().load_split("test")[0][:5]
        torch.testing.assert_close(loaded(x), net(x))
        with pytest.raises(CheckpointError, match=r"fake\.ts: not a TorchScript archive"):
            load_model(Scripted.name, "fake")
    finally:
        DOMAINS.unregister(Scripted.name)


def test_a_plugin_metric_sees_the_proxy_and_keeps_to_its_domains_and_proxy_kinds():
    from optbench.referees import Referee
    seen = {}

    def record(b):
        seen["logits"], seen["proxy"], seen["domain"] = b.proxy_logits, b.proxy, b.domain
        return float(len(b.x))
    only = {"contract_only_blobs": Metric("contract_only_blobs", "blobs only", compute=record,
                                          domains=("contract_blobs",)),
            "contract_only_gan": Metric("contract_only_gan", "discriminators only", compute=record,
                                        proxy_kinds=("realness",))}
    for name, m in only.items():
        METRICS.register(name, m)
    try:
        referee = Referee("contract_vectors", "user_proxy")
        x = Vectors().load_split("test")[0][:9]
        out = referee.evaluate(x, torch.arange(9) % 3, x)
        assert "contract_mean_abs" in out and not set(only) & set(out)
        assert set(out) == {"diverged_frac", "n_finite", *referee.metric_names()}
        referee = Referee("contract_blobs", "user_proxy")
        x = Blobs().load_split("test")[0][:7]
        out = referee.evaluate(x, torch.arange(7) % 4, x)
        assert out["contract_only_blobs"] == 7 and "contract_only_gan" not in out
        assert seen["domain"] == "contract_blobs" and seen["proxy"] is referee.proxy
        torch.testing.assert_close(seen["logits"], referee.proxy.model(x))
        # A discriminator-like proxy (kind "realness": one logit of "real" per sample)
        # gets the metric limited to that kind, and the classifier's metrics still.
        from optbench.proxies import PROXY_KINDS, as_proxy

        class Realness(nn.Module):
            def forward(self, x):
                return x.flatten(1).mean(1)
        assert "realness" in PROXY_KINDS
        critic = as_proxy(Realness(), "realness")
        out = referee.evaluate(x, torch.zeros(7, dtype=torch.long), x, critic)
        assert out["contract_only_gan"] == 7 and out["contract_only_blobs"] == 7
        assert seen["proxy"] is critic
        assert out["proxy_prob"] == pytest.approx(float(torch.sigmoid(x.flatten(1).mean(1)).double().mean()))
    finally:
        for name in only:
            METRICS.unregister(name)
