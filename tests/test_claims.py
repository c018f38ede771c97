"""Every number README's "Findings" quote from a committed results file, checked against
that file: tests/claims.toml names, per number, the file, the key path, the rule it is
printed with and the finding it stands in. Reading the key and printing it by the rule
must give the printed text, and the text must stand in that finding: editing either the
README or the file fails here. Pure reading of JSON and markdown tables, no model."""
from __future__ import annotations

import copy
import json
import math
import re
import tomllib
from pathlib import Path

import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = tomllib.loads((Path(__file__).with_name("claims.toml")).read_text())["claim"]
RULE = re.compile(r"^(?P<sign>\+)?(?P<n>\d+)(?P<kind>dp|sig)(?P<comma>,)?$")


# --- reading ------------------------------------------------------------------------

def md_cell(cell: str):
    """A markdown table cell: "m [lo, hi]" -> {mean, lo, hi}, a number -> float, else text."""
    m = re.fullmatch(r"(\S+) \[(\S+), (\S+)\]", cell)
    try:
        return {"mean": float(m[1]), "lo": float(m[2]), "hi": float(m[3])} if m else float(cell)
    except ValueError:
        return cell


def md_tables(text: str) -> dict:
    """Every markdown table of a file as {row label: {column header: cell}}."""
    rows, head = {}, None
    for line in text.splitlines():
        if not line.startswith("|"):
            head = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if head is None:
            head = cells
        elif not set(line) <= set("|-: "):
            rows[cells[0]] = {h: md_cell(c) for h, c in zip(head[1:], cells[1:])}
    return rows


_files: dict[str, object] = {}


def load(path: str):
    if path not in _files:
        text = (ROOT / path).read_text()
        _files[path] = md_tables(text) if path.endswith(".md") else json.loads(text)
    return _files[path]


def lookup(doc, key):
    for k in key:
        doc = doc[k]
    return doc


# --- printing -----------------------------------------------------------------------

def fmt_number(v, rule: str, scale: float = 1) -> str:
    m = RULE.match(rule)
    assert m, f"unknown rule {rule!r}"
    v = float(v) * scale
    n = int(m["n"])
    d = (n - 1 - math.floor(math.log10(abs(v))) if v else n - 1) if m["kind"] == "sig" else n
    if d < 0:
        v, d = round(v, d), 0
    s = f"{v:,.{d}f}" if m["comma"] else f"{v:.{d}f}"
    if s.startswith("-") and not s.strip("-0.,"):
        s = s[1:]                                   # no "-0.00"
    if m["sign"] and not s.startswith("-"):
        s = "+" + s
    return s


def fmt_value(v, rule: str | list[str], scale: float = 1) -> str:
    """A number by its rule; an estimate over seeds as "mean [lo, hi]", with one rule for
    all three or a list of three (mean, lo, hi); a departure level as "median [lo, hi]"
    ("never" for a level beyond the highest, just the median when lo = hi)."""
    m, lo, hi = rule if isinstance(rule, list) else [rule] * 3
    if isinstance(v, dict) and "median" in v:
        level = lambda x, r: "never" if x == "inf" else fmt_number(x, r, scale)  # noqa: E731
        if v["lo"] is None or v["lo"] == v["hi"]:
            return level(v["median"], m)
        return f"{level(v['median'], m)} [{level(v['lo'], lo)}, {level(v['hi'], hi)}]"
    if isinstance(v, dict):
        mean = v["mean"] if "mean" in v else v["value"]
        return (f"{fmt_number(mean, m, scale)} [{fmt_number(v['lo'], lo.lstrip('+'), scale)}, "
                f"{fmt_number(v['hi'], hi.lstrip('+'), scale)}]")
    return fmt_number(v, m, scale)


def mean_ci(values) -> dict:
    """Mean and Student-t 95% interval over seeds, as optbench.report.intervals.mean_ci."""
    v = [float(x) for x in values]
    n, mean = len(v), sum(v) / len(v)
    if all(x == v[0] for x in v):
        return {"mean": v[0], "lo": v[0], "hi": v[0]}
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "lo": mean - half, "hi": mean + half}


def reduce(values: list, how: str, groups: int) -> list:
    if how == "paired_mean_ci":                      # first half minus second half, seed by seed
        half = len(values) // 2
        return [mean_ci([a - b for a, b in zip(values[:half], values[half:])])]
    size = len(values) // groups
    if how == "mean_range":                          # each group's mean, then the lowest and highest
        means = [sum(values[i * size:(i + 1) * size]) / size for i in range(groups)]
        return [min(means), max(means)]
    out = []
    for g in (values[i * size:(i + 1) * size] for i in range(groups)):
        out += {"range": lambda: [min(g), max(g)], "min": lambda: [min(g)], "max": lambda: [max(g)],
                "sum": lambda: [sum(g)], "mean": lambda: [sum(g) / len(g)], "mean_ci": lambda: [mean_ci(g)],
                "ratio": lambda: [g[0] / g[1]]}[how]()
    return out


def render(claim: dict, read=load) -> str:
    """The claim's numbers read from their files and printed by its rule and template."""
    keys = claim["keys"] if "keys" in claim else [claim["key"]]
    files = claim["file"] if isinstance(claim["file"], list) else [claim["file"]] * len(keys)
    values = [lookup(read(f), k) for f, k in zip(files, keys)]
    if "reduce" in claim:
        values = reduce(values, claim["reduce"], claim.get("groups", 1))
    several = isinstance(claim["rule"], list) and len(values) > 1   # one rule per value, else one for all
    rules = claim["rule"] if several else [claim["rule"]] * len(values)
    printed = [fmt_value(v, r, claim.get("scale", 1)) for v, r in zip(values, rules)]
    return claim.get("template", "{}").format(*printed)


# --- the README ---------------------------------------------------------------------

def findings(readme: str) -> dict[int, str]:
    """Finding number -> its text, whitespace collapsed (line breaks read as one space)."""
    section = readme.split("\n## Findings", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"\n\s*(\d+)\. \*\*", section)
    return {int(parts[i]): " ".join(parts[i + 1].split()) for i in range(1, len(parts), 2)}


def stands_in(text: str, body: str) -> bool:
    """`text` occurs in `body` as whole numbers: not inside a longer number, and a number
    it starts with is not the tail of a negative or signed one ("0.12" in "-0.12")."""
    head = r"(?<![\d.])" + ("" if text[0] in "+-" else r"(?<![^\d]-)(?<!\+)")
    return re.search(head + re.escape(" ".join(text.split())) + r"(?!\d)(?!\.\d)", body) is not None


def problems(claim: dict, readme: str, read=load) -> list[str]:
    out = []
    printed = render(claim, read)
    if printed != claim["text"]:
        out.append(f"{claim['file']} {claim.get('key', claim.get('keys'))} prints {printed!r}, "
                   f"README's finding {claim['finding']} has {claim['text']!r}")
    body = findings(readme).get(claim["finding"], "")
    if not stands_in(claim["text"], body):
        out.append(f"{claim['text']!r} is not in README's finding {claim['finding']}")
    return out


README = (ROOT / "README.md").read_text()
IDS = [f"{c['finding']}:{c['text'][:40]}" for c in CLAIMS]


@pytest.mark.parametrize("claim", CLAIMS, ids=IDS)
def test_the_number_is_the_files_and_stands_in_the_finding(claim):
    assert problems(claim, README) == []


def test_every_finding_has_its_numbers_in_the_table():
    numbered = findings(README)
    assert set(range(1, 14)) <= set(numbered)
    assert {c["finding"] for c in CLAIMS} == set(range(1, 14))


def test_every_claim_reads_a_committed_results_file():
    for c in CLAIMS:
        for f in c["file"] if isinstance(c["file"], list) else [c["file"]]:
            assert f.startswith("results/") and (ROOT / f).is_file(), f


def edited(readme: str, finding: int, text: str) -> str:
    """The README with every occurrence of `text` in that finding's paragraph given a
    different last digit."""
    i = max(i for i, ch in enumerate(text) if ch.isdigit())
    new = text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1:]
    start = readme.index(f"\n{finding}. **", readme.index("\n## Findings"))
    end = re.search(r"\n\s*\d+\. \*\*|\n## ", readme[start + 1:]).start() + start + 1
    para = readme[start:end]
    pattern = r"\s+".join(re.escape(w) for w in text.split())   # as printed, across line breaks
    assert re.search(pattern, para), text
    return readme[:start] + re.sub(pattern, new, para) + readme[end:]


@pytest.mark.parametrize("claim", CLAIMS, ids=IDS)
def test_a_number_edited_in_the_readme_fails(claim):
    changed = edited(README, claim["finding"], claim["text"])
    assert changed != README
    assert any("is not in README" in p for p in problems(claim, changed))


def test_a_number_changed_in_the_file_fails():
    claim = next(c for c in CLAIMS if isinstance(lookup(load(c["file"]), c.get("key", [])) if "key" in c else None, dict)
                 and "median" in lookup(load(c["file"]), c["key"]) and c["text"][0].isdigit())
    assert problems(claim, README) == []
    doc = copy.deepcopy(load(claim["file"]))
    lookup(doc, claim["key"])["median"] = 1000.5
    assert render(claim, lambda f: doc).startswith("1000")
    assert any("prints" in p for p in problems(claim, README, lambda f: doc))


def test_the_rules_print_as_the_readme_does():
    assert fmt_number(1685.6, "3sig,") == "1,690"
    assert fmt_number(22.4, "0dp") == "22" and fmt_number(0.0593, "2sig") == "0.059"
    assert fmt_number(0.128, "+3dp") == "+0.128" and fmt_number(-0.0001, "2dp") == "0.00"
    assert fmt_number(0.42504, "0dp", scale=100) == "43"
    assert fmt_value({"mean": 2.4, "lo": 1.2894, "hi": 3.5106}, "1dp") == "2.4 [1.3, 3.5]"
    assert fmt_value({"mean": 0.0155, "lo": 0.0104, "hi": 0.0206}, "4dp") == "0.0155 [0.0104, 0.0206]"
    assert fmt_value({"median": 12, "lo": 8, "hi": "inf"}, "0dp") == "12 [8, never]"
    assert fmt_value({"median": 4, "lo": 4, "hi": 4}, "0dp") == "4"
    assert stands_in("0.12", "from 0.12 to") and not stands_in("0.12", "is -0.12 here")
    assert stands_in("0.68", "flat at 0.67-0.68 from") and not stands_in("2.4", "at 12.4 and")


# --- every number of findings 9-13 ------------------------------------------------

COVERED_FINDINGS = range(9, 14)
SETTINGS = tomllib.loads((Path(__file__).with_name("claims.toml")).read_text()).get("setting", [])
NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?%?")


def uncovered(body: str, texts: list[str]) -> list[str]:
    """The numbers of a finding's text that no claim or setting text covers."""
    spans = [(m.start(), m.end()) for t in texts
             for m in re.finditer(r"(?<![\d.])" + re.escape(" ".join(t.split())) + r"(?!\d)", body)]
    return [m.group() for m in NUMBER.finditer(body)
            if m.group().strip(",%") and not any(a <= m.start() < b for a, b in spans)]


@pytest.mark.parametrize("finding", COVERED_FINDINGS)
def test_every_number_in_the_finding_is_a_claim_or_a_stated_setting(finding):
    """Each number is either read from a file (a claim) or a setting of the run (sample
    size, seeds, thresholds; listed as [[setting]] in claims.toml with what it is)."""
    body = findings(README)[finding]
    texts = [c["text"] for c in CLAIMS if c["finding"] == finding]
    texts += [s["text"] for s in SETTINGS if s["finding"] == finding]
    assert uncovered(body, texts) == []


@pytest.mark.parametrize("setting", SETTINGS, ids=[f"{s['finding']}:{s['text'][:40]}" for s in SETTINGS])
def test_every_stated_setting_stands_in_its_finding(setting):
    assert setting.get("note"), setting
    assert stands_in(setting["text"], findings(README).get(setting["finding"], ""))
