"""A user's models are loaded and run once on real data before any cell runs: a model
that cannot load, or whose output does not fit its role, is refused in one line naming
the suite file, the model's table, what was expected, what was found and the fix."""
import json
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from optbench.errors import CheckpointError

CLASSES = 6
SHAPE = [1, 8, 8]


class NoFeatures(nn.Module):
    """A classifier without features(x): it cannot be a feature space."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(64, CLASSES)

    def forward(self, x):
        return self.lin(x.flatten(1))


class MapFeatures(NoFeatures):
    """features(x) as conv maps, not one vector per sample."""

    def features(self, x):
        return x.repeat(1, 3, 1, 1)


def _save(model, path):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def _unet(path, embeds, **config):
    from diffusers import UNet2DModel
    torch.manual_seed(0)
    cfg = dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
               norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
               up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=embeds)
    UNet2DModel(**{**cfg, **config}).save_pretrained(str(path), safe_serialization=True)


SMALL = f"arch = \"SmallCNN\"\narch_kwargs = {{ width = 4, num_classes = {CLASSES}, in_shape = {SHAPE} }}"
MODELS = {   # name -> its [domains.pf6.models.<name>] table
    "proxy6": f'{SMALL}\nfile = "proxy6.safetensors"',
    "proxy10": 'arch = "SmallCNN"\narch_kwargs = { width = 4, num_classes = 10, in_shape = [1, 8, 8] }\n'
               'file = "proxy10.safetensors"',
    "disc6": f'{SMALL}\nfile = "proxy6.safetensors"\nkind = "realness"',
    "nan6": f'{SMALL}\nfile = "nan6.safetensors"',
    "judge6": f'arch = "MLP"\narch_kwargs = {{ hidden = 8, num_classes = {CLASSES}, in_shape = {SHAPE} }}\n'
              'file = "judge6.safetensors"',
    "ae": f'arch = "ConvAE"\narch_kwargs = {{ width = 4, latent = 4, in_shape = {SHAPE} }}\nfile = "ae.safetensors"',
    "gen": f'arch = "DCGANGenerator"\narch_kwargs = {{ latent_dim = 4, width = 4, out_shape = {SHAPE} }}\n'
           'file = "gen.safetensors"',
    "gen16": 'arch = "DCGANGenerator"\narch_kwargs = { latent_dim = 4, width = 4, out_shape = [1, 16, 16] }\n'
             'file = "gen16.safetensors"',
    "nofeat": 'arch = "test_preflight:NoFeatures"\nfile = "nofeat.safetensors"',
    "mapfeat": 'arch = "test_preflight:MapFeatures"\nfile = "nofeat.safetensors"',
    # files that do not load
    "empty": f'{SMALL}\nfile = "empty.safetensors"',
    "trunc": f'{SMALL}\nfile = "trunc.safetensors"',
    "pickled": f'{SMALL}\nfile = "pickled.safetensors"',
    "shapes": f'{SMALL}\nfile = "proxy10.safetensors"',
    "keys": f'{SMALL}\nfile = "judge6.safetensors"',
    "kwargs": 'arch = "SmallCNN"\narch_kwargs = { widht = 4, num_classes = 6, in_shape = [1, 8, 8] }\n'
              'file = "proxy6.safetensors"',
    "badts": 'torchscript = "bad.ts"\nkind = "classifier"',
    "noisy6": f'arch = "NoisyCNN"\narch_kwargs = {{ width = 8, num_classes = {CLASSES}, in_shape = {SHAPE} }}\n'
              'file = "noisy6.safetensors"',
}
TYPO = 'arch = "no_such_module_pf:Net"\nfile = "judge6.safetensors"'   # an import path typo
UNETS = {"unet7": CLASSES + 1, "unet6": CLASSES}   # with and without the null label
OTHER_UNETS = {"unet_s16": {"sample_size": 16}, "unet_c3": {"in_channels": 3, "out_channels": 3}}
FOLDERS = ("noconfig", "noweights", "binonly", "garbage", "disagree", "unused")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The domain's data and every model file, written once."""
    root = tmp_path_factory.mktemp("preflight")
    g = np.random.default_rng(0)
    np.savez(root / "data.npz", x=g.random((8 * CLASSES, *SHAPE)).astype(np.float32),
             y=np.repeat(np.arange(CLASSES), 8))
    m = root / "models"
    m.mkdir()
    torch.manual_seed(0)
    from optbench.models.nets import MLP, ConvAE, SmallCNN
    from optbench.models.gan import DCGANGenerator
    _save(SmallCNN(4, CLASSES, SHAPE), m / "proxy6.safetensors")
    _save(SmallCNN(4, 10, SHAPE), m / "proxy10.safetensors")
    nan = SmallCNN(4, CLASSES, SHAPE)
    nn.init.constant_(nan.head.bias, float("nan"))
    _save(nan, m / "nan6.safetensors")
    _save(MLP(8, CLASSES, SHAPE), m / "judge6.safetensors")
    _save(ConvAE(4, 4, SHAPE), m / "ae.safetensors")
    _save(DCGANGenerator(4, 4, SHAPE), m / "gen.safetensors")
    _save(DCGANGenerator(4, 4, [1, 16, 16]), m / "gen16.safetensors")
    _save(NoFeatures(), m / "nofeat.safetensors")
    (m / "empty.safetensors").write_bytes(b"")
    whole = (m / "proxy6.safetensors").read_bytes()
    (m / "trunc.safetensors").write_bytes(whole[:len(whole) // 2])
    torch.save(SmallCNN(4, CLASSES, SHAPE).state_dict(), m / "pickled.safetensors")   # never unpickled
    with zipfile.ZipFile(m / "bad.ts", "w") as z:   # looks like TorchScript, is not
        z.writestr("bad/code/__torch__.py", "garbage")
    from optbench.models.nets import NoisyCNN
    _save(NoisyCNN(8, CLASSES, in_shape=SHAPE), m / "noisy6.safetensors")
    return root


def _suite(files, cell: str, extra_models: dict | None = None, domain: str = "") -> str:
    models = {**MODELS, **(extra_models or {})}
    tables = "\n".join(f"[domains.pf6.models.{n}]\n{t}\n" for n, t in models.items())
    return f"""name = "pf"
[domains.pf6]
data = "npz"
path = "{files / 'data.npz'}"
checkpoints = "{files / 'models'}"
splits = {{ test = 3, reference = 3 }}
default_proxy = "proxy6"
judges = ["judge6"]
ensemble = ["judge6"]
feature_spaces = ["judge6", "ae"]
{domain}
{tables}
[[cell]]
label = "c"
domain = "pf6"
source = "pixel_ascent"
n_samples = 6
{cell}
"""


def _check(files, tmp_path, cell: str = 'proxy = "proxy6"', **kw):
    from optbench.preflight import check_models
    from optbench.suite import parse_suite
    path = str(tmp_path / "suite.toml")
    check_models(parse_suite(_suite(files, cell, **kw), path).cells, path)
    return path


def _refused(files, tmp_path, cell: str, **kw) -> tuple[str, str]:
    path = str(tmp_path / "suite.toml")
    with pytest.raises(CheckpointError) as e:
        _check(files, tmp_path, cell, **kw)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg, path


def test_a_suite_whose_models_fit_passes_and_is_checked_once(files, tmp_path, monkeypatch):
    _check(files, tmp_path)
    import optbench.preflight as pf
    monkeypatch.setattr(pf, "load_model", lambda *a, **k: pytest.fail("loaded twice"))
    _check(files, tmp_path)


def test_a_10_class_proxy_on_a_6_class_domain_is_refused(files, tmp_path):
    msg, path = _refused(files, tmp_path, 'proxy = "proxy10"')
    assert msg.startswith(f"{path}: domains.pf6.models.proxy10 (the proxy of cell 'c'): "
                          "expected 6 logits per sample (the domain's 6 classes), found 10 "
                          "(output shape (2, 10)); use a model trained on the domain's 6 classes (labels 0..5)")


def test_a_discriminator_must_give_one_value_per_sample(files, tmp_path):
    msg, _ = _refused(files, tmp_path, 'proxy = "disc6"')
    assert "domains.pf6.models.disc6 (the proxy of cell 'c'): expected one 'real' logit per sample" in msg
    assert "found (2, 6); a classifier is kind 'classifier', not 'realness'" in msg


def test_outputs_must_be_finite_on_real_data(files, tmp_path):
    msg, _ = _refused(files, tmp_path, 'proxy = "nan6"')
    assert "models.nan6 (the proxy of cell 'c'): expected finite outputs on real test examples, " \
           "found 12 NaN or inf values of 12" in msg


def _other_domain(files, name: str, judges: list, ensemble: list, spaces: list) -> str:
    """A second domain on the same data, with its own roles."""
    models = dict.fromkeys(["proxy6", *judges, *ensemble, *spaces])
    return (f'[domains.{name}]\ndata = "npz"\npath = "{files / "data.npz"}"\ncheckpoints = "{files / "models"}"\n'
            f'splits = {{ test = 3, reference = 3 }}\ndefault_proxy = "proxy6"\njudges = {json.dumps(judges)}\n'
            f'ensemble = {json.dumps(ensemble)}\nfeature_spaces = {json.dumps(spaces)}\n'
            + "".join(f"[domains.{name}.models.{n}]\n{MODELS[n]}\n" for n in models))


def _refused_in(files, tmp_path, name: str, *roles) -> tuple[str, str]:
    """check_models on a cell of a second domain `name` with judges, ensemble, spaces `roles`."""
    from optbench.preflight import check_models
    from optbench.suite import parse_suite
    path = str(tmp_path / "suite.toml")
    text = _suite(files, 'proxy = "proxy6"', domain=_other_domain(files, name, *roles))
    with pytest.raises(CheckpointError) as e:
        check_models(parse_suite(text.replace('domain = "pf6"', f'domain = "{name}"'), path).cells, path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg, path


@pytest.mark.parametrize("space, found", [
    ("nofeat", "expected a method features(x) returning (batch, k) features, found none on NoFeatures"),
    ("mapfeat", "expected features(x) of shape (2, k) for a batch of 2, found (2, 3, 8, 8); flatten them"),
])
def test_a_feature_space_needs_features_of_one_vector_per_sample(files, tmp_path, space, found):
    msg, path = _refused_in(files, tmp_path, f"pf6_{space}", ["judge6"], ["judge6"], [space])
    assert msg.startswith(f"{path}: domains.pf6_{space}.models.{space} (a feature space of "
                          f"domains.pf6_{space}): {found}"), msg


def test_an_ensemble_member_that_is_no_judge_is_refused(files, tmp_path):
    msg, path = _refused_in(files, tmp_path, "pf6e", ["judge6"], ["judge6", "ae"], ["judge6"])
    assert msg == (f"{path}: domains.pf6e.ensemble: expected names from judges (judge6), found 'ae'; "
                   "add it to judges or remove it from ensemble")


@pytest.mark.parametrize("source", ["latent_ascent", "best_of_n"])
def test_a_classifier_named_as_a_generator_is_refused_naming_the_setting(files, tmp_path, source):
    msg, _ = _refused_source(files, tmp_path, source, 'generator = "proxy6"')
    assert (f"domains.pf6.models.proxy6 (settings.generator = 'proxy6' of cell 'c', source {source}): "
            "expected a generator: a module with an integer latent_dim and forward(z) -> samples of shape "
            "(n, 1, 8, 8); found SmallCNN with no integer latent_dim; set settings.generator to a generator "
            "of the domain (default 'gan_generator')") in msg


def _refused_source(files, tmp_path, source: str, settings: str, extra_models=None) -> tuple[str, str]:
    from optbench.preflight import check_models
    from optbench.suite import parse_suite
    path = str(tmp_path / "suite.toml")
    text = _suite(files, f'proxy = "proxy6"\nsettings = {{ {settings} }}', extra_models)
    text = text.replace('source = "pixel_ascent"', f'source = "{source}"')
    with pytest.raises(CheckpointError) as e:
        check_models(parse_suite(text, path).cells, path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return msg, path


def test_a_generator_of_another_shape_is_refused(files, tmp_path):
    msg, _ = _refused_source(files, tmp_path, "latent_ascent", 'generator = "gen16"')
    assert "expected forward(z) of 2 latents to give samples of shape (2, 1, 8, 8) (the domain's shape), " \
           "found (2, 1, 16, 16)" in msg


@pytest.fixture(scope="module")
def unets(files):
    """Diffusers folders: fitting, without the null label, and every broken kind."""
    m = files / "models"
    for name, embeds in UNETS.items():
        _unet(m / name, embeds)
    for name in FOLDERS:
        _unet(m / name, CLASSES + 1)
    for name, config in OTHER_UNETS.items():
        _unet(m / name, CLASSES + 1, **config)
    _unet(m / "unet_v", CLASSES + 1)
    from diffusers import DDPMScheduler
    v_prediction = DDPMScheduler(num_train_timesteps=100, prediction_type="v_prediction")
    v_prediction.save_pretrained(str(m / "unet_v" / "scheduler"))
    (m / "noconfig" / "config.json").unlink()
    (m / "noweights" / "diffusion_pytorch_model.safetensors").unlink()
    (m / "binonly" / "diffusion_pytorch_model.safetensors").rename(m / "binonly" / "diffusion_pytorch_model.bin")
    (m / "garbage" / "config.json").write_text("garbage{")
    config = json.loads((m / "unet7" / "config.json").read_text())
    _unet(m / "disagree", CLASSES + 1, block_out_channels=(8, 8))
    (m / "disagree" / "config.json").write_text(json.dumps(config))
    (m / "unused" / "config.json").write_text(json.dumps({**config, "num_class_embeds": None}))
    return {n: f'diffusers = "{n}"' for n in (*UNETS, *FOLDERS, *OTHER_UNETS, "unet_v")}


def test_a_unet_without_the_null_class_is_refused(files, unets, tmp_path):
    msg, _ = _refused_source(files, tmp_path, "guidance", 'generator = "unet6"', unets)
    assert ("domains.pf6.models.unet6 (settings.generator = 'unet6' of cell 'c', source guidance): expected "
            "config.num_class_embeds = 7 (the domain's 6 classes and the null label), found 6: its null label "
            "would be 5, a real class; train it with num_class_embeds = 7: labels 0..5 the domain's classes, "
            "6 the null label of classifier-free guidance") in msg


def test_a_unet_with_the_null_class_passes(files, unets, tmp_path):
    from optbench.preflight import check_models
    from optbench.suite import parse_suite
    path = str(tmp_path / "suite.toml")
    text = _suite(files, 'proxy = "proxy6"\nsettings = { generator = "unet7" }', unets)
    check_models(parse_suite(text.replace('"pixel_ascent"', '"guidance"'), path).cells, path)


@pytest.mark.parametrize("name, found", [
    ("unet_s16", "expected config.sample_size 8 x 8 (the domain's images), found 16"),
    ("unet_c3", "expected config.in_channels = 1 (the domain's channels), found 3"),
])
def test_a_unet_of_another_image_shape_is_refused(files, unets, tmp_path, name, found):
    msg, _ = _refused_source(files, tmp_path, "guidance", f'generator = "{name}"', unets)
    assert f"models.{name} (settings.generator = '{name}' of cell 'c', source guidance): {found}" in msg


def test_classifier_guidance_checks_the_classifier_and_the_prediction_type(files, unets, tmp_path):
    from optbench.preflight import check_models
    from optbench.suite import parse_suite
    path = str(tmp_path / "suite.toml")
    settings = 'guidance = "classifier", generator = "unet7", classifier = "noisy6"'
    text = _suite(files, f'proxy = "proxy6"\nsettings = {{ {settings} }}', unets)
    check_models(parse_suite(text.replace('"pixel_ascent"', '"guidance"'), path).cells, path)
    msg, _ = _refused_source(files, tmp_path, "guidance", settings.replace("noisy6", "proxy6"), unets)
    assert ("models.proxy6 (settings.classifier = 'proxy6' of cell 'c', source guidance): calling it as "
            "model(x_t, t) on 2 real test examples of shape (2, 1, 8, 8) raised TypeError: ") in msg
    msg, _ = _refused_source(files, tmp_path, "guidance", settings.replace("unet7", "unet_v"), unets)
    assert ("models.unet_v (settings.generator = 'unet_v' of cell 'c', source guidance): classifier guidance "
            "adds the classifier's gradient to a noise prediction: expected prediction_type 'epsilon', found "
            "'v_prediction'; use guidance = 'cfg' or an epsilon model") in msg


@pytest.mark.parametrize("name, parts", [
    ("noconfig", ["noconfig: not a diffusers model folder: no config.json (found "
                  "diffusion_pytorch_model.safetensors); expected what UNet2DModel.save_pretrained(folder, "
                  "safe_serialization=True) writes"]),
    ("noweights", ["noweights: no weights: expected diffusion_pytorch_model.safetensors beside config.json "
                   "(found config.json)"]),
    ("binonly", ["binonly/diffusion_pytorch_model.bin: a pickle-based file is never loaded",
                 "UNet2DModel.from_pretrained('", "save_pretrained('"]),
    ("garbage", ["garbage/config.json: not a valid JSON config (JSONDecodeError: Expecting value: line 1 column 1"]),
    ("disagree", ["disagree: config.json and the weights disagree: ", "tensors of another shape (",
                  "; save both from one model"]),
    ("unused", ["unused: config.json and the weights disagree: 1 tensor the model does not have "
                "(class_embedding.weight)"]),
])
def test_every_diffusers_folder_fault_is_one_line(files, unets, name, parts):
    from optbench.models.checkpoints import load_model
    _register(files, unets)
    with pytest.raises(CheckpointError) as e:
        load_model("pf6", name)
    msg = str(e.value)
    assert "\n" not in msg and all(p in msg for p in parts), msg
    if name == "noweights":
        assert ".bin" not in msg   # there is none


def _register(files, extra=None, domain: str = ""):
    """Declare domain pf6 as a suite does, with every model table (and `domain`'s)."""
    from optbench.suite import parse_suite
    parse_suite(_suite(files, 'proxy = "proxy6"', extra, domain), "s.toml")


@pytest.mark.parametrize("name, parts", [
    ("empty", ["empty.safetensors: not a safetensors file (Error while deserializing header: header too small): "
               "it is empty; save it again with safetensors.torch.save_file(model.state_dict(), path)"]),
    ("trunc", ["trunc.safetensors: not a safetensors file (Error while deserializing header",
               "): a truncated or damaged copy, or another format; copy it again or save it again"]),
    ("pickled", ["pickled.safetensors: not a safetensors file (", "it is a pickle, as torch.save writes (never loaded)",
                 "save_file(torch.load("]),
    ("shapes", ["proxy10.safetensors: the weights do not fit arch 'SmallCNN' as built from its arch_kwargs: "
                "2 tensors of another shape (head.weight (10, 16) in the file, (6, 16) in the model; head.bias "
                "(10,) in the file, (6,) in the model)"]),
    ("keys", ["judge6.safetensors: the weights do not fit arch 'SmallCNN' as built from its arch_kwargs: "
              "4 tensors missing from the file (body.1.weight, body.1.bias, body.8.weight and 1 more); "
              "2 tensors the model does not have (body.2.bias, body.2.weight); 2 tensors of another shape "
              "(body.4.weight (8, 8) in the file, (8, 4, 3, 3) in the model; head.weight (6, 8) in the file, "
              "(6, 16) in the model); check arch and arch_kwargs"]),
    ("kwargs", ["proxy6.safetensors: arch 'SmallCNN': arch_kwargs: unknown argument 'widht'; allowed: width, "
                "num_classes, in_shape, mean, std"]),
    ("typo", ["judge6.safetensors: arch: 'no_such_module_pf:Net': cannot import module 'no_such_module_pf'"]),
    ("badts", ["bad.ts: a damaged TorchScript archive (RuntimeError: ", "); save it again with "
               "torch.jit.script(model).save(...)"]),
])
def test_safetensors_faults_are_one_line(files, name, parts):
    from optbench.models.checkpoints import load_model
    # A suite refuses a cell's domain with a typo; load_model meets it in any other domain.
    typo = _other_domain(files, "pf6t", ["judge6"], ["judge6"], ["ae"]) + f"[domains.pf6t.models.typo]\n{TYPO}\n"
    _register(files, domain=typo)
    with pytest.raises(CheckpointError) as e:
        load_model("pf6t" if name == "typo" else "pf6", name)
    msg = str(e.value)
    assert "\n" not in msg and all(p in msg for p in parts), msg


def test_a_load_fault_is_refused_before_any_cell_naming_suite_and_table(files, tmp_path):
    msg, path = _refused(files, tmp_path, 'proxy = "trunc"')
    assert msg.startswith(f"{path}: domains.pf6.models.trunc (the proxy of cell 'c'): {files / 'models'}"
                          "/trunc.safetensors: not a safetensors file"), msg


def test_optbench_run_refuses_a_bad_model_before_any_cell(files, tmp_path, capsys):
    """The runner checks the models of the cells it is about to compute: exit 2, one line,
    and no cell folder, no failed cell."""
    from optbench.cli import main as cli
    path = tmp_path / "suite.toml"
    path.write_text(_suite(files, 'proxy = "proxy10"\nsettings = { max_steps = 2 }'))
    assert cli(["run", str(path), "--out", str(tmp_path / "results"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"optbench: error: {path}: domains.pf6.models.proxy10"), err
    assert "expected 6 logits per sample" in err[0] and "found 10" in err[0]
    suite_dir = tmp_path / "results" / "pf"
    assert not list(suite_dir.glob("*/DONE")) and not list(suite_dir.glob("*.failed.txt"))
