"""`optbench card`: one model through the standard battery of a domain, and its card.

    from optbench import evaluate
    card = evaluate(my_net, domain="mnist", out="cards")   # an nn.Module, or
    card = evaluate(arch="mylab.nets:MLP", weights="mlp.safetensors", domain="mnist")
    card["headline"], card["sources"][0]["departure"]

The card folder is a suite's results folder (the cells, summary.md, results and plots)
plus card.json (schema optbench.card/1), card.md and card.html."""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import torch

from optbench.card.battery import battery_path, battery_suite, protocol
from optbench.card.model import CONTROL_SEED, card_model, parameter_count, test_accuracy
from optbench.card.numbers import DEPARTURE_RULE, card_sources, headline
from optbench.errors import CheckpointError
from optbench.storage import write_atomic

CARD_SCHEMA = "optbench.card/1"
NAME_MAX = 64   # the suite name <name>_<domain>_quick stays within suite.MAX_NAME


def evaluate(module: torch.nn.Module | None = None, *, domain: str, name: str = "model",
             arch: str | None = None, weights: str | Path | None = None, arch_kwargs: dict | None = None,
             torchscript: str | Path | None = None, kind: str | None = None,
             replicates: tuple[str | Path, ...] = (), train_data: str | Path | None = None,
             quick: bool = False, seeds: list[int] | None = None, n_samples: int | None = None,
             out: str | Path = "cards", workers: int = 1, device: str | None = None,
             command: str = "", pythonpath: tuple[str, ...] = (), battery: str | Path | None = None) -> dict:
    """Run the battery of `domain` against one model and write its card; returns card.json."""
    import sys
    from optbench.domains import get_domain
    from optbench.suite import SuiteError, _is_name
    pythonpath = tuple(str(Path(p).resolve()) for p in pythonpath)
    for p in pythonpath:   # the model's module:Class is imported before the suite is read
        if p not in sys.path:
            sys.path.insert(0, p)
    if not _is_name(name) or len(name) > NAME_MAX:
        raise SuiteError(f"--name: expected 1 to {NAME_MAX} ASCII letters, digits, '-' or '_' (the card's "
                         f"folder is <name>_<domain>[_quick]), got {name!r}")
    dom = get_domain(domain)
    _check_flags(out, battery, seeds, n_samples)
    if not dom.shipped:
        raise SuiteError(f"--domain: {domain!r} is not a shipped domain; a card runs on mnist, digits8, gmm2, "
                         "gmm64 or faces, whose referees and nulls every card shares (for a domain of your own, "
                         "write its cells in a suite file: docs/cards.md, 'Limits')")
    if train_data is not None:
        _check_training_data(domain, Path(train_data))
    suite_name = f"{name}_{dom.name}" + ("_quick" if quick else "")
    folder = Path(out) / suite_name
    created = not folder.exists()
    try:   # every check before any cell runs; a refused model leaves no folder behind
        model = card_model(dom.name, folder / "weights", name=name, arch=arch, weights=weights,
                           arch_kwargs=arch_kwargs, torchscript=torchscript, module=module, kind=kind,
                           replicates=tuple(replicates))
        path = Path(battery) if battery is not None else battery_path(dom.name)
        suite, left_out = battery_suite(dom.name, model, name=suite_name, quick=quick, seeds=seeds,
                                        n_samples=n_samples, pythonpath=pythonpath, path=path)
        from optbench.models.checkpoints import load_model
        from optbench.preflight import check_models
        try:   # the model (and its control) as every cell will call it: output shape, kind
            check_models(suite.cells)
        except CheckpointError as e:
            raise CheckpointError(f"the model ({'--torchscript' if torchscript else '--model/--weights'}"
                                  f"{', --kind' if kind else ''}): {e}") from None
        net = load_model(dom.name, model.name)
        accuracy = test_accuracy(dom.name, net, model.kind)
    except BaseException:
        if created:
            import shutil
            shutil.rmtree(folder, ignore_errors=True)
        raise
    from optbench.report import write_suite_outputs
    from optbench.runner import run_suite
    from optbench.storage import suite_lock
    folder.mkdir(parents=True, exist_ok=True)
    with suite_lock(folder):
        counts = run_suite(suite, Path(out), device=device, command=command or "optbench.evaluate",
                           workers=workers)
    if counts["failed"]:
        raise RuntimeError(f"{counts['failed']} cell(s) of the battery failed; see {folder}/run.log and "
                           "rerun the same command to retry them (complete cells are kept)")
    write_suite_outputs(folder)
    card = build_card(folder, model, accuracy, parameter_count(net), left_out, protocol(path, suite, quick), command, [s.cell_id for s in suite.cells])
    write_card(folder, card)
    return card


def _check_flags(out, battery, seeds, n_samples) -> None:
    """The flags a battery's suite would otherwise report under the battery file's name."""
    from optbench.suite import MAX_SAMPLES, SuiteError, _check_seeds
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out: {out} is a file; give a folder for the cards (created if missing)")
    if battery is not None and not Path(battery).is_file():
        raise ValueError(f"--battery: no such file {battery}; give a battery file (optbench/card/batteries/"
                         "image.toml is one)")
    if seeds is not None:
        _check_seeds("--seeds", list(seeds))
    if n_samples is not None and not (isinstance(n_samples, int) and 6 <= n_samples <= MAX_SAMPLES):
        raise SuiteError(f"--n-samples: expected an integer >= 6 and <= {MAX_SAMPLES}, got {n_samples!r}")


def _check_training_data(domain: str, file: Path) -> None:
    """Refuse training data that shares rows with the splits optbench starts from and
    compares with (optbench/domains/hygiene.py)."""
    from optbench.domains import DomainError
    from optbench.domains.hygiene import check_training_file, overlap_error
    try:
        found = check_training_file(domain, file)
    except DomainError as e:
        raise ValueError(f"--train-data: {e}") from None
    problem = overlap_error(found, str(file))
    if problem:
        raise ValueError(f"--train-data: {problem}")


def build_card(folder: Path, model, accuracy: dict, parameters: int, left_out: list[dict], run: dict,
               command: str, cell_ids: list[str]) -> dict:
    from optbench import __version__
    from optbench.cache import NUMBERS_VERSION
    from optbench.domains import get_domain
    from optbench.report.controls import CONTROLS_NOTE
    from optbench.report.intervals import DEPARTURE_METHOD, INTERVAL_METHOD
    from optbench.grids import grid_files
    from optbench.report.summary import scan_cells
    from optbench.runner import git_commit
    wanted = set(cell_ids)   # the battery's cells: not others an earlier battery left in the folder
    cells = [c for c in scan_cells(folder)[0] if c["spec"]["cell_id"] in wanted]
    domain = cells[0]["spec"]["domain"]
    sources = card_sources(cells, model.name)
    entry = {k: v for k, v in model.entry.items() if k in ("arch", "arch_kwargs", "kind", "sha256")}
    return {
        "schema": CARD_SCHEMA, "optbench": __version__, "commit": git_commit(),
        "numbers_version": NUMBERS_VERSION, "command": command,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z"),
        "domain": domain, "feature_spaces": list(get_domain(domain).feature_spaces),
        "model": {"name": model.name, **entry, "parameters": parameters, **accuracy,
                  "format": "torchscript" if "torchscript" in model.entry else "safetensors",
                  "replicates": len(model.replicates),
                  "proxy_training_variance": (f"sampled: seed s pushes against weight file s mod "
                                              f"{len(model.replicates) + 1} (--weights, then --replicates)")
                  if model.replicates else
                  "not sampled: one set of weights for every seed (give --replicates to sample it)"},
        "protocol": {**run, "interval": INTERVAL_METHOD, "departure_interval": DEPARTURE_METHOD, "departure": DEPARTURE_RULE,
                     "controls": CONTROLS_NOTE,
                     "untrained_control": (f"the same architecture re-initialized after torch.manual_seed("
                                           f"{CONTROL_SEED})" if model.control else model.why_no_control)},
        "suite": folder.name, "headline": headline(model.name, domain, sources),
        "sources": sources, "left_out": left_out, "cells": sorted(cell_ids),
        # The suite's figures this card shows, and each source's image grid (first seed).
        "figures": [f"plots/{p.name}" for p in sorted((folder / "plots").glob("curves*.png"))]
                   + [f"plots/{p}" for p in ("controls.png", "equal_proxy.png") if (folder / "plots" / p).is_file()],
        "grids": {label: f"plots/{file}" for label, (_, file) in grid_files(cells).items()
                  if label in {s["label"] for s in sources}},
    }


def write_card(folder: Path, card: dict) -> None:
    from optbench.card.page import card_markdown, write_page
    write_atomic(folder / "card.json", json.dumps(card, indent=1, allow_nan=False) + "\n")
    md = card_markdown(card, folder)
    write_atomic(folder / "card.md", md)
    write_page(folder, md, "card.html", f"optbench card: {card['model']['name']} on {card['domain']}")
