"""The README's quick start for a user's classifier (examples/own_classifier/): export
MNIST's splits, train the MLP, put it through a battery with `optbench card`, and insert
its row into a leaderboard; at a tiny size (one seed, 16 samples, a two-cell battery)."""
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from optbench.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "own_classifier"

TINY = textwrap.dedent('''
    name = "tiny"
    version = 1
    seeds = [0]
    quick = { seeds = [0], pressure = 0.5 }

    [[cell]]
    for = "classifier"
    control = true
    label = "pixel ascent, Adam"
    source = "pixel_ascent"
    n_samples = 16
    settings = { start = "real", lr = 0.05, max_steps = 8 }
''')


def test_own_classifier_quick_start(tmp_path, capsys):
    folder = tmp_path / "own_classifier"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("data", "cards", "*.safetensors", "__pycache__"))
    assert main(["splits", "mnist", "--export", str(folder / "data")]) == 0
    run = subprocess.run([sys.executable, "train.py", "--steps", "150"], cwd=folder, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    (folder / "tiny.toml").write_text(TINY)
    args = ["card", "--domain", "mnist", "--name", "mlp", "--model", "model:MLP", "--weights",
            str(folder / "mlp.safetensors"), "--arch-kwargs", '{"width": 128}', "--train-data",
            str(folder / "data" / "mnist_proxy_train.npz"), "--battery", str(folder / "tiny.toml"),
            "--pythonpath", str(folder), "--out", str(folder / "cards")]
    assert main(args) == 0
    out = capsys.readouterr().out
    card = json.loads((folder / "cards" / "mlp_mnist" / "card.json").read_text())
    assert card["headline"] in out
    assert card["model"]["test_accuracy"] > 0.7
    assert card["sources"][0]["controls"][0]["kind"] == "untrained proxy"
    # the leaderboard takes the card's row (a leaderboard of its own protocol, built from it)
    from optbench.card.leaderboard import build, write
    write(build("mnist", [card]), tmp_path / "board")
    assert main(["leaderboard", "mnist", "--board", str(tmp_path / "board"), "--add",
                 str(folder / "cards" / "mlp_mnist")]) == 0
    assert "**mlp** (yours)" in capsys.readouterr().out
    # Training on the test split is refused before any cell runs, naming the count.
    x, y = (np.load(folder / "data" / "mnist_proxy_train.npz")[k] for k in ("x", "y"))
    from optbench.domains import get_domain
    tx, ty = get_domain("mnist").load_split("test")
    np.savez(folder / "leaky.npz", x=np.concatenate([x, tx[:5].numpy()]), y=np.concatenate([y, ty[:5].numpy()]))
    assert main([*args[:-2], "--out", str(tmp_path / "leaky_cards"), "--train-data", str(folder / "leaky.npz")]) == 2
    err = capsys.readouterr().err
    assert "5 rows equal rows of mnist's test split" in err and err.count("\n") == 1
    assert not (tmp_path / "leaky_cards").exists()
