"""Build results/leaderboard/<domain>.json and .md: the standard battery against every
shipped proxy variant of a domain (and, on MNIST, the GAN's discriminator), one card each.

    python benchmarks/leaderboard.py mnist digits8 gmm2 gmm64 faces --quick --workers 2

Cards run in --work (cells, plots; resumable: rerun to continue) and their card.json,
card.md and figures are copied to results/leaderboard/<domain>/<model>/; the cells are
not committed (a card's cell ids rebuild them: rerun this script)."""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from optbench.card import evaluate
from optbench.card.leaderboard import build, read_card, write
from optbench.domains import get_domain, referee_roles
from optbench.models.checkpoints import catalog, checkpoint_dir, entry_kind

DISCRIMINATORS = {"mnist": ("gan_discriminator",)}   # the realness table, where it is asked for


def variants(domain: str) -> list[str]:
    """The domain's shipped proxies: classifier models that referee nothing (and the
    discriminators named above)."""
    roles = referee_roles(domain)
    out = [m for m, e in catalog(domain).items()
           if entry_kind(e) == "classifier" and m not in roles and "arch" in e and m.startswith("proxy")]
    return sorted(out) + list(DISCRIMINATORS.get(domain, ()))


def copy_card(src: Path, dst: Path) -> None:
    """card.json, card.md and the figures card.md shows (not the grids: they are the
    heavy part, and the cells rebuild them)."""
    card = read_card(src)
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "plots").mkdir(exist_ok=True)
    for plot in card["figures"]:
        shutil.copy2(src / plot, dst / plot)
    shutil.copy2(src / "card.json", dst / "card.json")
    from optbench.card.page import card_markdown
    (dst / "card.md").write_text(card_markdown(card, dst))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("domains", nargs="+")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work", default="cards_leaderboard")
    p.add_argument("--out", default="results/leaderboard")
    p.add_argument("--only", nargs="+", default=None, help="these models only")
    a = p.parse_args()
    for domain in a.domains:
        cards = []
        for model in variants(domain):
            if a.only and model not in a.only:
                continue
            entry = catalog(domain)[model]
            t0 = time.time()
            card = evaluate(domain=domain, name=model, arch=entry["arch"], arch_kwargs=entry.get("arch_kwargs", {}),
                            weights=checkpoint_dir(domain) / entry["file"], kind=entry_kind(entry),
                            quick=a.quick, out=a.work, workers=a.workers,
                            command=f"optbench card --domain {domain} --model {entry['arch']} --weights "
                                    f"{model}.safetensors --name {model}" + (" --quick" if a.quick else ""))
            print(f"{domain} {model}: {time.time() - t0:.0f} s; {card['headline']}", flush=True)
            copy_card(Path(a.work) / card["suite"], Path(a.out) / domain / model)
            cards.append(card)
        done = [read_card(f) for f in sorted((Path(a.out) / domain).glob("*/card.json"))]
        js, md = write(build(get_domain(domain).name, done), Path(a.out))
        print(f"wrote {js} and {md}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
