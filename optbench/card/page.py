"""card.md and card.html: the card's numbers as tables, with the suite's figures."""
from __future__ import annotations

from pathlib import Path

from optbench.card.numbers import PROXY_LEVELS, _fmt
from optbench.report.html import markdown_page
from optbench.storage import write_atomic
from optbench.text import md_code, md_text


def _departed(d: dict) -> str:
    if not d["departed_seeds"]:
        return f"stays (0/{d['seeds']})"
    return f"{_fmt(d['level'])} ({d['departed_seeds']}/{d['seeds']})"


def card_markdown(card: dict, folder: Path) -> str:
    m, p = card["model"], card["protocol"]
    sources = card["sources"]
    spaces = card["feature_spaces"]
    accuracy = (f"test accuracy {m['test_accuracy']:.3f} (n = {m['n']})" if "test_accuracy" in m else
                f"real test samples called real {m['real_called_real']:.3f} (n = {m['n']})")
    md = [f"# optbench card: {md_code(m['name'])} on {md_code(card['domain'])}", "",
          f"**{md_text(card['headline'], in_table=False)}**", "",
          "## Model", "",
          "| field | value |", "|---|---|",
          f"| architecture | {md_code(m.get('arch', 'TorchScript'))} {md_code(m.get('arch_kwargs', {}))} |",
          f"| kind | {m['kind']} |", f"| sha256 | {md_code(m['sha256'])} |",
          f"| parameters | {m['parameters']:,} |", f"| on the test split | {accuracy} |",
          f"| proxy-training variance | {md_text(m['proxy_training_variance'])} |", "",
          "## Protocol", "",
          f"Battery {md_code(p['battery'])} version {p['version']}{' (quick)' if p['quick'] else ''}: "
          f"seeds {p['seeds']}, pressure caps x{p['pressure']:g}; {md_text(p['interval'], in_table=False)}. "
          f"Departure: {md_text(p['departure'], in_table=False)}. Untrained control: "
          f"{md_text(p['untrained_control'], in_table=False)}.", "",
          f"- command: {md_code(card['command'])}",
          f"- optbench {card['optbench']}, commit {md_code(card['commit'])}, numbers version "
          f"{card['numbers_version']}, created {card['created']}", ""]
    gold = sorted({k for s in sources for k in s["gold_departure"]})
    md += ["## Where outputs leave the data", "",
           "Pressure level of departure by KID in each feature space (mean [95% interval] over the seeds "
           "that departed; in brackets: seeds departed / seeds)" + (", and by the exact gold metrics" if gold
                                                                    else "") + ".", "",
           "| source | knob | " + " | ".join(f"KID @ {md_text(s)}" for s in spaces)
           + "".join(f" | {g}" for g in gold) + " |",
           "|---|---|" + "---|" * (len(spaces) + len(gold))]
    for s in sources:
        md.append(f"| {md_text(s['label'])} | {s['knob']} | "
                  + " | ".join(_departed(s["departure"][sp]) if sp in s["departure"] else "n/a" for sp in spaces)
                  + "".join(f" | {_departed(s['gold_departure'][g])}" if g in s["gold_departure"] else " | n/a"
                            for g in gold) + " |")
    md += ["", "## At equal proxy probability", "",
           "The held-out judges' probability of the target, the two-sample classifier accuracy (c2st; 0.5: "
           "indistinguishable from real) and KID where the proxy first gives 0.5, 0.9 and 0.99 "
           "(stopped: each sample is kept at the step it first reached the level; interpolated: between "
           "levels), and proxy queries per sample to reach 0.9.", "",
           "| source | how | " + " | ".join(f"judges @ {lv}" for lv in PROXY_LEVELS) + " | "
           + " | ".join(f"c2st @ {lv}" for lv in PROXY_LEVELS) + " | queries to 0.9 |",
           "|---|---|" + "---|" * (2 * len(PROXY_LEVELS) + 1)]
    for s in sources:
        at = s["at_proxy"]
        md.append(f"| {md_text(s['label'])} | {s['how_at_proxy']} | "
                  + " | ".join(_fmt(at[str(lv)].get("judge_prob", [None] * 3)) for lv in PROXY_LEVELS) + " | "
                  + " | ".join(_fmt(at[str(lv)].get("c2st", [None] * 3)) for lv in PROXY_LEVELS)
                  + f" | {_fmt(s['queries_to_0.9'])} |")
    md += ["", "## At the highest pressure", "",
           "| source | level | proxy | judges | gap | " + " | ".join(f"KID / q99 @ {md_text(sp)}" for sp in spaces)
           + " |", "|---|---|---|---|---|" + "---|" * len(spaces)]
    for s in sources:
        md.append(f"| {md_text(s['label'])} | {s['knob']} {s['max_level']:g} | {_fmt(s['proxy_prob_at_max'])} | "
                  f"{_fmt(s['judge_prob_at_max'])} | {_fmt(s['gap_at_max'])} | "
                  + " | ".join(_fmt(s["kid_over_q99_at_max"].get(sp, [None] * 3)) for sp in spaces) + " |")
    paired = [(s, c) for s in sources for c in s["controls"]]
    if paired:
        md += ["", "## Controls", "", md_text(p["controls"], in_table=False), "",
               "| source | control | at | KID, same step | KID, same L2 | judges, same step | judges, same L2 |",
               "|---|---|---|---|---|---|---|"]
        for s, c in paired:
            k, j = c["at_max"].get("kid", {}), c["at_max"].get("judge_prob", {})
            md.append(f"| {md_text(s['label'])} | {c['kind']} | {c['knob']} {k.get('level', float('nan')):g} | "
                      f"{_fmt(k.get('same_step', [None] * 3))} | {_fmt(k.get('same_l2', [None] * 3))} | "
                      f"{_fmt(j.get('same_step', [None] * 3))} | {_fmt(j.get('same_l2', [None] * 3))} |")
    if card["left_out"]:
        md += ["", "## Not run", ""] + [f"- {md_text(x['label'], in_table=False)}: "
                                       f"{md_text(x['why'], in_table=False)}" for x in card["left_out"]]
    md += ["", "## Figures", ""]
    for plot in card["figures"]:
        if (folder / plot).is_file():
            md += [f"![{Path(plot).stem}]({plot})", ""]
    for label, grid in card["grids"].items():
        if (folder / grid).is_file():
            md += [f"### {md_text(label, in_table=False)}", "", f"![{Path(grid).stem}]({grid})", ""]
    md += ["## Cells", "", f"{len(card['cells'])} cells, each a folder of this one: "
           + ", ".join(md_code(c) for c in card["cells"]), ""]
    return "\n".join(md)


def write_page(folder: Path, md: str, name: str, title: str) -> Path:
    path = folder / name
    write_atomic(path, markdown_page(md, folder, title))
    return path
