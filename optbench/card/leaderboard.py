"""Leaderboards: one row per card of a domain, all from one battery protocol.

A row is a card's numbers, cut to what a table can hold: per source, the level where
outputs leave the data by KID in the domain's primary feature space, and the held-out
judges' probability of the target where the proxy first gives 0.9 and 0.99. Rows are
ranked by the first source of the battery (pixel ascent with Adam for a classifier): a
higher judges' probability at proxy 0.9 first (the proxy's confidence carries over to
models the optimizer never saw), counted where every seed reached 0.9; the other rows
after them, by the judges' probability at the highest pressure. The departure level alone does not rank: under Adam it is set by the
optimizer more than by the proxy, and most shipped proxies tie on it. Cards run under
another protocol (battery, version, quick, seeds, samples per level) are refused."""
from __future__ import annotations

import json
import math
from pathlib import Path

from optbench.card.numbers import _fmt
from optbench.storage import write_atomic
from optbench.text import md_code, md_text

LEADERBOARD_SCHEMA = "optbench.leaderboard/1"
PROTOCOL_KEYS = ("battery", "battery_sha256", "version", "quick", "seeds", "n_samples", "pressure")
CARD_KEYS = ("schema", "domain", "feature_spaces", "model", "protocol", "sources", "commit", "cells",
             "optbench", "numbers_version")


def read_card(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "card.json"
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such card; `optbench card` writes <out>/<name>_<domain>/card.json") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON (line {e.lineno}: {e.msg}); give a card.json written by "
                         "`optbench card`") from None
    if not isinstance(card, dict) or card.get("schema") != "optbench.card/1":
        raise ValueError(f"{path}: schema: expected 'optbench.card/1', got "
                         f"{card.get('schema') if isinstance(card, dict) else type(card).__name__!r}; give a "
                         "card.json written by `optbench card`")
    missing = [k for k in CARD_KEYS if k not in card]
    missing += [f"sources[{i}].{k}" for i, s in enumerate(card.get("sources") or [])
                for k in ("label", "departure", "at_proxy", "gap_at_max", "knob", "max_level", "gold_departure")
                if not isinstance(s, dict) or k not in s]
    if missing:
        raise ValueError(f"{path}: field {missing[0]!r} is missing; give a card.json written by `optbench card` "
                         "(schema optbench/schemas/card.schema.json)")
    return card


def row(card: dict) -> dict:
    m = card["model"]
    primary = card["feature_spaces"][0]
    return {"model": m["name"], "kind": m["kind"], "arch": m.get("arch", "TorchScript"),
            "arch_kwargs": m.get("arch_kwargs", {}), "sha256": m["sha256"], "parameters": m["parameters"],
            "accuracy": m.get("test_accuracy", m.get("real_called_real")),
            "replicates": m.get("replicates", 0), "commit": card["commit"], "cells": len(card["cells"]),
            "sources": {s["label"]: {"departure": s["departure"].get(primary), "knob": s["knob"],
                                     "max_level": s["max_level"],
                                     "judges_at_0.9": s["at_proxy"]["0.9"].get("judge_prob"),
                                     "reached_0.9": s["at_proxy"]["0.9"].get("seeds_reached", 0),
                                     "seeds": s["seeds"],
                                     "judges_at_0.99": s["at_proxy"]["0.99"].get("judge_prob"),
                                     "gap_at_max": s["gap_at_max"],
                                     "judges_at_max": s["judge_prob_at_max"],
                                     "gold": {k: v["level"] for k, v in s["gold_departure"].items()}}
                        for s in card["sources"]}}


def _protocol(card: dict) -> dict:
    return {k: card["protocol"].get(k) for k in PROTOCOL_KEYS}


def rank_key(r: dict, source: str) -> tuple:
    s = r["sources"].get(source)
    if s is None or s["departure"] is None:
        return (2, 0.0, 0.0)
    judges = (s.get("judges_at_0.9") or [None])[0]
    departed = s["departure"]["departed_seeds"]
    level = s["departure"]["level"][0] if departed else math.inf
    if judges is not None and s.get("reached_0.9", 0) == s.get("seeds"):   # every seed got there
        return (0, -judges, -level)
    at_max = (s.get("judges_at_max") or [None])[0]
    return (1, -(at_max if at_max is not None else -1.0), -level)


def build(domain: str, cards: list[dict]) -> dict:
    """The leaderboard of `domain` from its cards (refusing a mix of protocols)."""
    if not cards:
        raise ValueError(f"no cards for domain {domain!r}")
    protocol = _protocol(cards[0])
    for c in cards:
        if c["domain"] != domain:
            raise ValueError(f"card of {c['model']['name']!r}: domain {c['domain']!r}, not {domain!r}")
        if _protocol(c) != protocol:
            raise ValueError(f"card of {c['model']['name']!r}: protocol {_protocol(c)} differs from "
                             f"{protocol}; rerun it with the leaderboard's protocol")
    rows = [row(c) for c in cards]
    by_kind: dict[str, list[dict]] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r)
    tables = {}
    for kind, members in by_kind.items():
        order = [s["label"] for s in next(c for c in cards if c["model"]["kind"] == kind)["sources"]]
        members.sort(key=lambda r: rank_key(r, order[0]) if order else (0,))
        tables[kind] = {"sources": order, "rank_by": order[0] if order else None, "rows": members}
    first = cards[0]
    return {"schema": LEADERBOARD_SCHEMA, "domain": domain, "protocol": first["protocol"],
            "feature_space": first["feature_spaces"][0], "optbench": first["optbench"],
            "numbers_version": first["numbers_version"], "tables": tables}


def _departure_text(d: dict | None) -> str:
    if d is None:
        return "n/a"
    if not d["departed_seeds"]:
        return f"stays ({d['seeds']})"
    return f"{_fmt(d['level'], 2)} ({d['departed_seeds']}/{d['seeds']})"


def markdown(board: dict) -> str:
    p = board["protocol"]
    md = [f"# Leaderboard: {md_code(board['domain'])}", "",
          f"Battery {md_code(p['battery'])} version {p['version']}{' (quick)' if p['quick'] else ''}, seeds "
          f"{p['seeds']}, {p['n_samples'][0] if p['n_samples'] else '?'} samples per level, pressure caps "
          f"x{p['pressure']:g}; optbench {board['optbench']}, numbers version {board['numbers_version']}. "
          f"Departure: the level where KID in {md_code(board['feature_space'])}'s features leaves its "
          "null's q99 and stays (mean [Student-t 95%] over the seeds that departed; departed/seeds; "
          "'stays': never within the battery's cap). Judges: the held-out judges' probability of the "
          "target where the proxy first gives 0.9 (0.99). Ranked by the first source: higher judges' "
          "probability at proxy 0.9 first, where every seed reached 0.9; the other rows after them, by the "
          "judges' probability at the highest pressure.", ""]
    for kind, t in board["tables"].items():
        sources = t["sources"]
        md += [f"## {'Classifiers' if kind == 'classifier' else 'Discriminators' if kind == 'realness' else kind}",
               "", "Departure level:", "",
               "| # | model | accuracy | " + " | ".join(md_text(s) for s in sources) + " |",
               "|---|---|---|" + "---|" * len(sources)]
        for i, r in enumerate(t["rows"], 1):
            name = f"**{md_text(r['model'])}** (yours)" if r.get("yours") else md_text(r["model"])
            acc = f"{r['accuracy']:.3f}" if r["accuracy"] is not None else "n/a"
            md.append(f"| {i} | {name} | {acc} | " + " | ".join(
                _departure_text((r["sources"].get(s) or {}).get("departure")) for s in sources) + " |")
        for level in ("0.9", "0.99"):
            md += ["", f"Judges at proxy {level}:", "",
                   "| model | " + " | ".join(md_text(s) for s in sources) + " |", "|---|" + "---|" * len(sources)]
            for r in t["rows"]:
                md.append(f"| {md_text(r['model'])} | " + " | ".join(
                    _fmt((r["sources"].get(s) or {}).get(f"judges_at_{level}") or [None] * 3, 2)
                    for s in sources) + " |")
        md.append("")
    return "\n".join(md)


def write(board: dict, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{board['domain']}.json", out / f"{board['domain']}.md"
    write_atomic(js, json.dumps(board, indent=1, allow_nan=False) + "\n")
    write_atomic(md, markdown(board))
    return js, md


def with_card(board: dict, card: dict) -> tuple[dict, str]:
    """The leaderboard with the user's card inserted (refused under another protocol)."""
    cards_protocol = {k: board["protocol"].get(k) for k in PROTOCOL_KEYS}
    if card["domain"] != board["domain"]:
        raise ValueError(f"--add: the card is of domain {card['domain']!r}, the leaderboard of {board['domain']!r}")
    if _protocol(card) != cards_protocol:
        differs = [k for k in PROTOCOL_KEYS if _protocol(card)[k] != cards_protocol[k]]
        raise ValueError(f"--add: the card's protocol differs in {', '.join(differs)} ("
                         + ", ".join(f"{k} {_protocol(card)[k]} vs {cards_protocol[k]}" for k in differs)
                         + "); rerun `optbench card` with the leaderboard's protocol"
                         + (" (--quick)" if cards_protocol["quick"] else ""))
    new = {**row(card), "yours": True}
    kind = new["kind"]
    tables = dict(board["tables"])
    t = dict(tables.get(kind, {"sources": [s["label"] for s in card["sources"]], "rows": []}))
    rows = [*t["rows"], new]
    rows.sort(key=lambda r: rank_key(r, t["sources"][0]))
    tables[kind] = {**t, "rows": rows}
    board = {**board, "tables": tables}
    return board, markdown(board)
