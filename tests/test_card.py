"""`optbench card`: a user's classifier through a (tiny) battery on MNIST and on gmm2.

The card must validate against its schema, name only cells that exist, and hold numbers
that equal an independent recomputation from the cells' curve.json files (numpy, not
the report's functions). Also: the shipped batteries expand for every shipped domain and
both proxy kinds, a referee's weights are refused, a shipped domain takes a suite's extra
models, and a leaderboard refuses a card run under another protocol."""
from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from optbench.card import evaluate
from optbench.card.battery import BATTERIES, CardModel, battery_suite
from optbench.card.leaderboard import build, with_card
from optbench.domains import get_domain
from optbench.errors import CheckpointError
from optbench.models.checkpoints import checkpoint_dir, catalog
from optbench.suite import SuiteError, parse_suite

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "optbench/schemas/card.schema.json").read_text())

MODULE = textwrap.dedent('''
    import torch

    class TinyMLP(torch.nn.Module):
        def __init__(self, d=784, classes=10, width=32):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, width), torch.nn.ReLU(),
                                           torch.nn.Linear(width, classes))

        def forward(self, x):
            return self.net(x)
''')

BATTERY = textwrap.dedent('''
    name = "tiny"
    version = 7
    seeds = [0, 1]
    quick = { seeds = [0], pressure = 0.5 }

    [[cell]]
    for = "classifier"
    control = true
    label = "pixel ascent, Adam"
    source = "pixel_ascent"
    n_samples = 16
    settings = { start = "real", lr = 0.05, max_steps = 8 }

    [[cell]]
    for = "classifier"
    label = "matched noise"
    source = "pixel_ascent"
    n_samples = 16
    settings = { start = "real", lr = 0.05, max_steps = 8, optimizer = "random_sign" }

    [[cell]]
    for = "classifier"
    label = "latent ascent, exact sampler"
    source = "latent_ascent"
    n_samples = 16
    settings = { generator = "sampler_exact", lr = 0.05, max_steps = 8 }
''')


def _user_model(tmp_path: Path, domain: str, steps: int = 60) -> tuple[Path, Path, dict]:
    """A user's module on disk and its weights, trained briefly on the proxy_train split."""
    (tmp_path / "usermodels.py").write_text(MODULE)
    import sys
    sys.path.insert(0, str(tmp_path))
    from usermodels import TinyMLP
    dom = get_domain(domain)
    kwargs = {"d": int(np.prod(dom.shape)), "classes": dom.num_classes}
    torch.manual_seed(0)
    net = TinyMLP(**kwargs)
    x, y = dom.load_split("proxy_train")
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    weights = tmp_path / f"mlp_{domain}.safetensors"
    save_file(net.state_dict(), str(weights))
    battery = tmp_path / "tiny.toml"
    battery.write_text(BATTERY)
    return weights, battery, kwargs


def _departs(rows: list[dict], knob: str, key: str, q99: float) -> float:
    """First level from which `key` stays above q99 (an independent reading of the rule)."""
    levels = np.array([r[knob] for r in rows], dtype=float)
    values = np.array([r.get(key, np.nan) for r in rows], dtype=float)
    ok = np.isfinite(values)
    levels, beyond = levels[ok], values[ok] > q99
    if not beyond[-1]:
        return math.nan
    k = len(beyond) - 1
    while k > 0 and beyond[k - 1]:
        k -= 1
    return float(levels[k])


def _check_against_cells(card: dict, folder: Path) -> None:
    jsonschema.validate(card, SCHEMA)
    for cell in card["cells"]:
        assert (folder / cell / "DONE").is_file(), cell
    primary = get_domain(card["domain"]).feature_net
    for s in card["sources"]:
        curves = [json.loads((folder / c / "curve.json").read_text()) for c in s["cell_ids"]]
        assert set(s["cell_ids"]) <= set(card["cells"])
        knob = s["knob"]
        at = [_departs(c["rows"], knob, "kid", c["null"]["kid"]["q99"]) for c in curves]
        d = s["departure"][primary]
        assert d["departed_seeds"] == sum(math.isfinite(a) for a in at)
        if d["departed_seeds"]:
            assert d["level"][0] == pytest.approx(np.nanmean(at))
        ratio = [next(r["kid"] for r in reversed(c["rows"]) if math.isfinite(r.get("kid", math.nan)))
                 / c["null"]["kid"]["q99"] for c in curves]
        assert s["kid_over_q99_at_max"][primary][0] == pytest.approx(np.mean(ratio))
        gap = [c["rows"][-1]["proxy_prob"] - c["rows"][-1]["judge_prob"] for c in curves]
        assert s["gap_at_max"][0] == pytest.approx(np.mean(gap))
        if s["how_at_proxy"] == "stopped":
            # counted where at least 90% of a seed's samples reached the level (summary.MIN_REACHED)
            judged = [next((p.get("judge_prob", math.nan) if p["reached_frac"] >= 0.9 else math.nan
                            for p in c["equal_proxy"] if p["threshold"] == 0.99), math.nan) for c in curves]
            got = s["at_proxy"]["0.99"].get("judge_prob", [None])[0]
            if np.isfinite(judged).any():
                assert got == pytest.approx(np.nanmean(judged))
            else:
                assert got is None


def test_card_of_a_user_classifier_on_mnist(tmp_path):
    weights, battery, kwargs = _user_model(tmp_path, "mnist")
    card = evaluate(domain="mnist", name="tiny_mlp", arch="usermodels:TinyMLP", weights=weights,
                    arch_kwargs=kwargs, battery=battery, out=tmp_path / "cards", pythonpath=(str(tmp_path),))
    folder = tmp_path / "cards" / card["suite"]
    on_disk = json.loads((folder / "card.json").read_text())
    assert on_disk == card
    _check_against_cells(card, folder)
    assert card["model"]["test_accuracy"] > 0.5   # trained briefly: far above chance (0.1)
    assert card["protocol"]["version"] == 7 and card["protocol"]["seeds"] == [0, 1]
    labels = [s["label"] for s in card["sources"]]
    assert labels == ["pixel ascent, Adam"]   # the noise control is a control, not a source
    kinds = {c["kind"] for c in card["sources"][0]["controls"]}
    assert kinds == {"untrained proxy", "matched noise"}
    # MNIST has no exact sampler: the cell is left out, with why
    assert [x["label"] for x in card["left_out"]] == ["latent ascent, exact sampler"]
    assert "sampler_exact" in card["left_out"][0]["why"]
    assert "tiny_mlp on mnist" in card["headline"]
    md = (folder / "card.md").read_text()
    assert card["headline"] in md and (folder / "card.html").stat().st_size > 10_000
    # A leaderboard of this card takes a second card of the same protocol, and refuses another.
    board = build("mnist", [card])
    again, table = with_card(board, card)
    rows = again["tables"]["classifier"]["rows"]
    assert [r["model"] for r in rows] == ["tiny_mlp", "tiny_mlp"] and sum(bool(r.get("yours")) for r in rows) == 1
    assert table.count("**tiny_mlp** (yours)") == 1
    other = {**card, "protocol": {**card["protocol"], "quick": True}}
    with pytest.raises(ValueError, match="protocol differs in quick"):
        with_card(board, other)


def test_card_on_gmm2_carries_the_gold(tmp_path):
    weights, battery, kwargs = _user_model(tmp_path, "gmm2", steps=100)
    card = evaluate(domain="gmm2", name="mlp2", arch="usermodels:TinyMLP", weights=weights, arch_kwargs=kwargs,
                    battery=battery, quick=True, out=tmp_path / "cards", pythonpath=(str(tmp_path),))
    folder = tmp_path / "cards" / card["suite"]
    _check_against_cells(card, folder)
    assert card["protocol"]["quick"] and card["protocol"]["seeds"] == [0] and card["protocol"]["pressure"] == 0.5
    assert {s["label"] for s in card["sources"]} == {"pixel ascent, Adam", "latent ascent, exact sampler"}
    assert all(s["max_level"] == 4 for s in card["sources"])   # quick: the cap of 8 halved
    assert all(s["gold_departure"] for s in card["sources"])   # the exact mixture's metrics
    assert card["left_out"] == []


@pytest.mark.parametrize("domain", ["mnist", "digits8", "gmm2", "gmm64", "faces"])
@pytest.mark.parametrize("kind", ["classifier", "realness"])
def test_the_shipped_batteries_expand_on_every_shipped_domain(domain, kind, tmp_path):
    entry = catalog(domain)["gan_discriminator" if kind == "realness" else get_domain(domain).default_proxy]
    model = CardModel("m", {"arch": entry["arch"], "arch_kwargs": entry["arch_kwargs"],
                            "file": str(checkpoint_dir(domain) / entry["file"]), "kind": kind}, kind)
    for quick in (False, True):
        suite, left_out = battery_suite(domain, model, name="b", quick=quick)
        assert suite.cells and {c.proxy for c in suite.cells} == {"m"}   # no control given: none run
        assert {c.seed for c in suite.cells} == ({0, 1, 2} if quick else {0, 1, 2, 3, 4})
        caps = [dict(c.settings).get("max_steps") for c in suite.cells if "max_steps" in dict(c.settings)]
        full, quick_cap = (1024, 256) if domain.startswith("gmm") else (128, 64)   # the batteries' quick.pressure
        assert set(caps) == ({quick_cap} if quick else {full})
        assert all("untrained control" in x["label"] for x in left_out if "control" in x["label"])


def test_a_referee_is_refused_by_its_sha256(tmp_path):
    dom = get_domain("mnist")
    entry = catalog("mnist")["judge_bncnn"]
    with pytest.raises(CheckpointError, match="referee of domain 'mnist'"):
        evaluate(domain="mnist", arch=entry["arch"], arch_kwargs=entry["arch_kwargs"],
                 weights=dom.checkpoint_dir / entry["file"], out=tmp_path)


def test_a_suite_adds_models_to_a_shipped_domain(tmp_path):
    entry = catalog("mnist")["proxy_cnn"]
    (tmp_path / "mine.safetensors").write_bytes((checkpoint_dir("mnist") / entry["file"]).read_bytes())
    text = textwrap.dedent(f'''
        name = "ext"
        [domains.mnist.models.mine]
        arch = "SmallCNN"
        arch_kwargs = {json.dumps(entry["arch_kwargs"]).replace(":", " =").replace('"width"', "width")}
        file = "mine.safetensors"
        [[cell]]
        domain = "mnist"
        proxy = "mine"
        source = "pixel_ascent"
        n_samples = 16
        settings = {{ max_steps = 2 }}
    ''')
    path = tmp_path / "s.toml"
    path.write_text(text)
    suite = parse_suite(text, str(path))
    assert suite.cells[0].proxy == "mine"
    assert "mine" in catalog("mnist") and "proxy_cnn" in catalog("mnist")
    # the id holds the model's sha256, so the same weights under another name give the same numbers' key
    assert suite.cells[0].versions()["checkpoints"]["mine"] == entry["sha256"][:16]
    with pytest.raises(SuiteError, match="taken by a shipped model"):
        parse_suite(text.replace("models.mine]", "models.proxy_cnn]").replace('proxy = "mine"', 'proxy = "proxy_cnn"'),
                    str(path))
    with pytest.raises(SuiteError, match="may only add models"):
        parse_suite(text + '\n[domains.mnist]\nsplits = {}\n' if False else
                    text.replace("[domains.mnist.models.mine]", "[domains.mnist]\nshape = [1]\n"
                                 "[domains.mnist.models.mine]"), str(path))
    # a suite without the table gets the shipped domain back
    parse_suite(text.split("[domains.mnist.models.mine]")[0] + text.split('file = "mine.safetensors"')[1]
                .replace('proxy = "mine"', 'proxy = "proxy_cnn"'), str(path))
    assert "mine" not in catalog("mnist")


def test_replicates_give_one_weight_file_per_seed(tmp_path):
    weights, _, kwargs = _user_model(tmp_path, "mnist", steps=30)
    from usermodels import TinyMLP
    torch.manual_seed(1)
    other = tmp_path / "replicate1.safetensors"
    save_file(TinyMLP(**kwargs).state_dict(), str(other))
    battery = tmp_path / "one.toml"
    battery.write_text(BATTERY.split("[[cell]]")[0] + "[[cell]]" + BATTERY.split("[[cell]]")[1]
                       .replace("control = true\n", "").replace("max_steps = 8", "max_steps = 2"))
    card = evaluate(domain="mnist", name="reps", arch="usermodels:TinyMLP", weights=weights, arch_kwargs=kwargs,
                    replicates=(other,), battery=battery, out=tmp_path / "cards", pythonpath=(str(tmp_path),))
    folder = tmp_path / "cards" / card["suite"]
    from optbench.model_files import sha256_of
    by_seed = {}
    for cell in card["cells"]:
        spec = json.loads((folder / cell / "spec.json").read_text())
        by_seed[spec["seed"]] = (spec["versions"]["replicate"],
                                 json.loads((folder / cell / "curve.json").read_text())["rows"][0]["proxy_prob"])
    assert by_seed[0][0] == sha256_of(weights)[:16] and by_seed[1][0] == sha256_of(other)[:16]
    assert by_seed[0][1] != by_seed[1][1]   # another network scored the same starts
    assert card["model"]["replicates"] == 1 and card["model"]["proxy_training_variance"].startswith("sampled")


def test_evaluate_takes_an_nn_module(tmp_path):
    """The Python twin: an nn.Module whose class is importable; its state_dict is written
    into the card folder and the untrained control is built from its class."""
    weights, _, kwargs = _user_model(tmp_path, "mnist", steps=30)
    from safetensors.torch import load_file
    from usermodels import TinyMLP
    net = TinyMLP(**kwargs)
    net.load_state_dict(load_file(str(weights)))
    battery = tmp_path / "one.toml"
    battery.write_text(BATTERY.split("[[cell]]")[0].replace("seeds = [0, 1]", "seeds = [0]") + "[[cell]]"
                       + BATTERY.split("[[cell]]")[1].replace("max_steps = 8", "max_steps = 2"))
    card = evaluate(net, domain="mnist", name="py", arch_kwargs=kwargs, battery=battery, out=tmp_path / "cards")
    folder = tmp_path / "cards" / card["suite"]
    from optbench.model_files import sha256_of
    assert card["model"]["sha256"] == sha256_of(folder / "weights" / "py.safetensors")
    assert card["model"]["arch"] == "usermodels:TinyMLP"
    assert [c["kind"] for c in card["sources"][0]["controls"]] == ["untrained proxy"]
    assert len(card["cells"]) == 2   # the model and its untrained control, one seed


def _one_cell_battery(tmp_path: Path) -> Path:
    battery = tmp_path / "one_cell.toml"
    battery.write_text(BATTERY.split("[[cell]]")[0].replace("seeds = [0, 1]", "seeds = [0]") + "[[cell]]"
                       + BATTERY.split("[[cell]]")[1].replace("control = true\n", "").replace("max_steps = 8",
                                                                                             "max_steps = 2"))
    return battery


def test_two_models_under_one_name_in_one_process_are_measured_apart(tmp_path):
    weights, _, kwargs = _user_model(tmp_path, "mnist", steps=60)
    from usermodels import TinyMLP
    torch.manual_seed(5)
    untrained = tmp_path / "untrained.safetensors"
    save_file(TinyMLP(**kwargs).state_dict(), str(untrained))
    battery = _one_cell_battery(tmp_path)
    first = []
    for i, w in enumerate((weights, untrained)):
        card = evaluate(domain="mnist", name="m", arch="usermodels:TinyMLP", weights=w, arch_kwargs=kwargs,
                        battery=battery, out=tmp_path / f"cards{i}", pythonpath=(str(tmp_path),))
        cell = card["sources"][0]["cell_ids"][0]
        first.append(json.loads((tmp_path / f"cards{i}" / card["suite"] / cell / "curve.json").read_text())
                     ["rows"][-1]["proxy_prob"])
    assert first[0] > 0.2 and first[1] < 0.2 and first[0] != first[1]   # each measured its own weights


def test_refused_before_any_cell_runs(tmp_path):
    weights, _, kwargs = _user_model(tmp_path, "mnist", steps=5)
    battery = _one_cell_battery(tmp_path)
    common = dict(domain="mnist", name="r", arch="usermodels:TinyMLP", weights=weights, battery=battery,
                  pythonpath=(str(tmp_path),))
    judge = checkpoint_dir("mnist") / catalog("mnist")["judge_bncnn"]["file"]
    with pytest.raises(CheckpointError, match="--replicates: .*judge_bncnn"):   # not the judge, as a replicate
        evaluate(**common, arch_kwargs=kwargs, replicates=(judge,), out=tmp_path / "a")
    with pytest.raises(CheckpointError, match="--replicates: .*do not fit"):    # another architecture
        evaluate(**common, arch_kwargs=kwargs, replicates=(judge.parent / "proxy_cnn.safetensors",),
                 out=tmp_path / "b")
    with pytest.raises(SuiteError, match="no cell of the battery runs for a realness model"):
        evaluate(**common, arch_kwargs=kwargs, kind="realness", out=tmp_path / "c")
    both = tmp_path / "both_kinds.toml"
    both.write_text(battery.read_text().replace('for = "classifier"', 'for = ["classifier", "realness"]'))
    with pytest.raises(CheckpointError, match=r"the model \(--model/--weights, --kind\)"):   # 10 logits, not one
        evaluate(**{**common, "battery": both}, arch_kwargs=kwargs, kind="realness", out=tmp_path / "c")
    assert not any((tmp_path / d).exists() and any((tmp_path / d).iterdir()) for d in "abc")


def test_leaderboard_refuses_a_malformed_card(tmp_path):
    from optbench.card.leaderboard import read_card
    (tmp_path / "card.json").write_text(json.dumps({"schema": "optbench.card/1"}))
    with pytest.raises(ValueError, match="field 'domain' is missing"):
        read_card(tmp_path)
