"""Suite files: expansion, ids, and one-line errors that name the field."""
import pytest

from optbench.suite import SuiteError, parse_suite

GOOD = """
name = "t"
seeds = [0, 1]
[[cell]]
domain = "mnist"
source = "pixel_ascent"
n_samples = 16
settings = { start = ["real", "noise"], max_steps = 8 }
"""


def test_expansion_and_ids():
    suite = parse_suite(GOOD)
    assert len(suite.cells) == 4  # 2 starts x 2 seeds
    ids = {c.cell_id for c in suite.cells}
    assert len(ids) == 4
    again = parse_suite(GOOD)
    assert [c.cell_id for c in again.cells] == [c.cell_id for c in suite.cells]
    changed = parse_suite(GOOD.replace("max_steps = 8", "max_steps = 16"))
    assert not ids & {c.cell_id for c in changed.cells}
    assert suite.cells[0].settings_dict["lr"] == 0.01  # defaults filled in


@pytest.mark.parametrize("edit, field, hint", [
    (("n_samples = 16", "n_sample = 16"), "n_sample", "did you mean 'n_samples'"),
    (("max_steps = 8", "max_step = 8"), "settings", "did you mean 'max_steps'"),
    (("pixel_ascent", "pixel_ascnt"), "source", "did you mean 'pixel_ascent'"),
    (('domain = "mnist"', 'domain = "cifar"'), "domain", "allowed: mnist"),
    (("max_steps = 8", "max_steps = -4"), "max_steps", "must be >= 1"),
    (("max_steps = 8", "max_steps = 2.5"), "max_steps", "expected int"),
    (('"real", "noise"', '"real", "nois"'), "start", "allowed: real, noise, mean"),
    (('["real", "noise"]', "[]"), "start", "empty list"),
    (("seeds = [0, 1]", "seeds = []"), "seeds", "non-empty list"),
    (("max_steps = 8", 'max_steps = 8, norm = "l2"'), "eps", "must be > 0"),
    (("max_steps = 8", 'max_steps = 8, norm = "l3"'), "norm", "allowed: none, l2, linf"),
    (("n_samples = 16", "n_samples = 2"), "n_samples", "integer >= 6"),
    (("n_samples = 16", 'n_samples = 16\nproxy = "proxy_cn"'), "proxy", "did you mean 'proxy_cnn'"),
    (('name = "t"', 'name = "a b"'), "name", "letters, digits"),
    (("[[cell]]", "[[cells]]"), "cells", "did you mean 'cell'"),
    (("n_samples = 16", "n_samples = 16 ="), "TOML syntax error", "line"),
    (("seeds = [0, 1]", 'seeds = "0"'), "seeds", "list of integers"),
    (("seeds = [0, 1]", "seeds = [0, 0]"), "seeds", "distinct"),
    (("seeds = [0, 1]", "seeds = [-1]"), "seeds", "integers >= 0"),
    (('settings = { start = ["real", "noise"], max_steps = 8 }', "settings = 3"), "settings", "expected a table"),
    (("n_samples = 16", 'n_samples = 16\nlabel = 5'), "label", "expected a string"),
    (('domain = "mnist"\n', ''), "domain", "missing field"),
    (("max_steps = 8", "max_steps = 8, lr = -0.1"), "lr", "must be > 0"),
    (("max_steps = 8", 'max_steps = 8, lr = "fast"'), "lr", "expected float"),
    (('name = "t"', 'name = "t"\ndescripton = "x"'), "descripton", "did you mean 'description'"),
    (('source = "pixel_ascent"', 'source = "guidance"'), "start", "allowed: guidance, base"),
])

def test_bad_field_gives_one_line_error_naming_it(edit, field, hint):
    with pytest.raises(SuiteError) as e:
        parse_suite(GOOD.replace(*edit), "bad.toml")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("bad.toml")
    assert field in msg and hint in msg, msg


def test_guidance_settings_are_checked():
    g = GOOD.replace('source = "pixel_ascent"', 'source = "guidance"').replace(
        'settings = { start = ["real", "noise"], max_steps = 8 }', "settings = { %s }")
    for body, field, hint in [
        ("scales = [0.0, 3.0, 1.0]", "scales", "distinct and increasing"),
        ("scales = []", "scales", "non-empty list of numbers"),
        ("scales = [-1.0, 1.0]", "scales", ">= 0"),
        ('guidance = "cfg", base = "uncond"', "base", "needs base = 'cond'"),
        ('clip = "clamp"', "clip", "allowed: none, clip_eps, clip"),
        ("interval_lo = 500, interval_hi = 100", "interval_lo", "<= interval_hi"),
    ]:
        with pytest.raises(SuiteError) as e:
            parse_suite(g % body, "g.toml")
        assert field in str(e.value) and hint in str(e.value), str(e.value)
    suite = parse_suite(g % 'guidance = ["cfg", "classifier"], scales = [0.0, 2.0]', "g.toml")
    assert len(suite.cells) == 4 and suite.cells[0].settings_dict["scales"] == (0.0, 2.0)


def test_duplicate_cells_are_refused():
    text = GOOD + GOOD[GOOD.index("[[cell]]"):]
    with pytest.raises(SuiteError, match="identical specs"):
        parse_suite(text, "dup.toml")


def test_proxy_list_is_a_grid_axis_and_each_name_is_checked():
    text = '''
name = "p"
seeds = [0, 1]
[[cell]]
label = "pa"
domain = "mnist"
proxy = ["proxy_cnn", "proxy_adv15", "gan_discriminator"]
source = "best_of_n"
n_samples = 8
settings = { pool_size = 64 }
'''
    suite = parse_suite(text)
    assert len(suite.cells) == 6
    assert {c.proxy for c in suite.cells} == {"proxy_cnn", "proxy_adv15", "gan_discriminator"}
    assert {c.label for c in suite.cells} == {"pa [proxy_cnn]", "pa [proxy_adv15]", "pa [gan_discriminator]"}
    assert len({c.cell_id for c in suite.cells}) == 6
    with pytest.raises(SuiteError, match=r"cell\[0\]\.proxy: unknown value 'proxy_adv1' \(did you mean 'proxy_adv15'\?\)"):
        parse_suite(text.replace('"proxy_adv15"', '"proxy_adv1"'))
    with pytest.raises(SuiteError, match=r"target_class: must be in 0..9"):
        parse_suite(text.replace('source = "best_of_n"', 'source = "generator_finetune"')
                    .replace("pool_size = 64", "target_class = 12"))


@pytest.mark.parametrize("source, proxy", [("online_pixel_ascent", "gan_discriminator"),
                                           ("pixel_ascent", "gan_generator"),
                                           ("best_of_n", "diffusion_unet")])
def test_models_that_cannot_be_that_sources_proxy_are_refused(source, proxy):
    text = f'''
name = "p"
[[cell]]
domain = "mnist"
proxy = "{proxy}"
source = "{source}"
n_samples = 8
'''
    with pytest.raises(SuiteError, match=rf"cell\[0\]\.proxy: '{proxy}' .* cannot be a proxy for source '{source}'; allowed: .*proxy_cnn"):
        parse_suite(text)
