"""Pre-flight checks of the models a suite uses, before any cell runs.

Each distinct model of the cells (the proxy, the domain's judges and feature spaces, the
models a source loads itself) is loaded once and run once on two real test examples of
its domain, as the benchmark will call it. A model that cannot load, or whose output
does not fit its role (a 10-class proxy on a 6-class domain, a UNet without the null
class, a classifier named as a generator), is refused in one line naming the suite
file, the model's table, what was expected, what was found and the fix. Without these
checks such a model fails inside every cell, or runs and measures something else.

    check_models(suite.cells, where=suite.path)   # raises CheckpointError

Results are kept per process by (domain, model, sha256, role), so a second call costs
nothing."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from optbench.domains import get_domain
from optbench.models.checkpoints import domain_table, load_model, model_hash, model_kind, model_table
from optbench.errors import CheckpointError, first_line

BATCH = 2   # real test examples per forward: enough to tell samples from features

# The role of each model a shipped source names in its settings: how the source calls it.
SOURCE_ROLES: dict[str, dict[str, str]] = {
    "guidance": {"generator": "diffusion", "classifier": "noisy_classifier"},
    "diffusion_finetune": {"generator": "diffusion"},
    **{name: {"generator": "generator"}
       for name in ("latent_ascent", "generator_finetune", "best_of_n", "quantilizer")},
}
# Sources that train the model they name: it needs weights to train.
TRAINS = {"diffusion_finetune", "generator_finetune"}

_PASSED: set[tuple] = set()   # checks already passed in this process


@dataclass(frozen=True)
class Use:
    """One way a suite uses one model."""
    domain: str
    model: str
    role: str                    # a key of CHECKS
    what: str                    # how the suite uses it, for messages
    flags: tuple[str, ...] = ()  # role details: "head", "epsilon", "trainable"
    setting: str = ""            # the source setting that names it
    default: str = ""            # that setting's default, for the fix


def check_models(specs, where: str = "") -> None:
    """Load every model the cells `specs` use and run it once on real data; raise
    CheckpointError (one line) at the first that does not fit its role."""
    prefix = f"{where}: " if where else ""
    for domain in dict.fromkeys(s.domain for s in specs):
        problem = ensemble_problem(domain)
        if problem:
            raise CheckpointError(prefix + problem)
    loaded: dict[tuple[str, str], torch.nn.Module] = {}
    batches: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}   # two test examples per domain
    uses = {}   # one per (domain, model, role): the first cell that uses it names it
    for spec in specs:
        for u in model_uses(spec):
            uses.setdefault((u.domain, u.model, u.role, u.flags), u)
    for use in uses.values():
        dom = get_domain(use.domain)
        key = (dom.name, dom.num_classes, tuple(dom.shape), tuple(dom.bounds), use.model,
               model_hash(use.domain, use.model), use.role, use.flags)
        if key in _PASSED:
            continue
        head = f"{prefix}{model_table(use.domain, use.model)} ({use.what}): "
        if (use.domain, use.model) not in loaded:
            loaded[use.domain, use.model] = _load(use, head)
        if use.domain not in batches:
            x, y = dom.load_split("test")
            batches[use.domain] = x[:BATCH], y[:BATCH]
        problem = _run_check(loaded[use.domain, use.model], use, *batches[use.domain])
        if problem:
            raise CheckpointError(head + problem)
        _PASSED.add(key)


def model_uses(spec) -> list[Use]:
    """Every (model, role) one cell uses, in the order they are checked."""
    dom = get_domain(spec.domain)
    cell = f"cell {spec.label!r}" if spec.label else f"a {spec.source} cell"
    table = domain_table(dom)
    spaces = spec.feature_spaces()
    uses = [Use(spec.domain, spec.proxy, "proxy", f"the proxy of {cell}")]
    uses += [Use(spec.domain, j, "judge", f"a judge of {table}", ("head",) if j in spaces else ())
             for j in dom.judges]
    uses += [Use(spec.domain, f, "features", f"a feature space of {table}") for f in spaces]
    return uses + source_uses(spec, cell)


def source_uses(spec, cell: str) -> list[Use]:
    """The models the cell's source loads itself, with the role its settings give them."""
    from optbench.pressure import SOURCES
    source = SOURCES[spec.source]
    s = spec.settings_dict
    roles = SOURCE_ROLES.get(spec.source, {})
    uses = []
    for m in source.models(s):
        key = next((k for k in roles if s.get(k) == m), None)
        if key is None:   # a plug-in source: its models are loaded, not called
            uses.append(Use(spec.domain, m, "load", f"a model of source {spec.source!r} in {cell}"))
            continue
        role = roles[key]
        flags = tuple(f for f, on in (("epsilon", s.get("guidance") == "classifier" and role == "diffusion"),
                                      ("trainable", spec.source in TRAINS)) if on)
        uses.append(Use(spec.domain, m, role, f"settings.{key} = {m!r} of {cell}, source {spec.source}",
                        flags, key, str(source.settings[key].default)))
    return uses


def ensemble_problem(domain) -> str | None:
    """The judge ensemble averages judges' outputs: it must name judges, at least one."""
    dom = get_domain(domain)
    table = domain_table(dom)
    if not dom.ensemble:
        return (f"{table}.ensemble: expected at least one judge, found none; name judges from "
                f"judges ({', '.join(dom.judges) or 'none declared'})")
    stray = [m for m in dom.ensemble if m not in dom.judges]
    if stray:
        return (f"{table}.ensemble: expected names from judges ({', '.join(dom.judges) or 'none declared'}), "
                f"found {stray[0]!r}; add it to judges or remove it from ensemble")
    return None


def _load(use: Use, head: str) -> torch.nn.Module:
    try:
        return load_model(use.domain, use.model)
    except CheckpointError as e:
        raise CheckpointError(head + str(e)) from None
    except Exception as e:   # a user's module may raise anything while it is built
        raise CheckpointError(head + f"loading it raised {first_line(e)}") from None


def _run_check(model: torch.nn.Module, use: Use, x: torch.Tensor, y: torch.Tensor) -> str | None:
    """The role's check on real test examples x, y; any exception a user's forward
    raises becomes the problem."""
    dom = get_domain(use.domain)
    try:
        with torch.no_grad():
            return CHECKS[use.role](model, dom, x, y, use)
    except Exception as e:
        return (f"calling it as {CALLS[use.role]} on {BATCH} real test examples of shape "
                f"{tuple(x.shape)} raised {first_line(e)}; it must take the domain's inputs as {CALLS[use.role]}")


# -- what each role must output ------------------------------------------------------

def _finite(out: torch.Tensor, on: str) -> str | None:
    bad = int((~torch.isfinite(out.float())).sum())
    if bad:
        return (f"expected finite outputs on {on}, found {bad} NaN or inf values of {out.numel()}; "
                "check the weights and the input range it expects")
    return None


def _logits(out, dom, on: str = "real test examples") -> str | None:
    """(batch, num_classes) finite logits."""
    c = dom.num_classes
    if not isinstance(out, torch.Tensor):
        return f"expected a tensor of logits, found {type(out).__name__}; forward(x) must return (batch, {c}) logits"
    n = len(out) if out.ndim else 0
    if out.ndim == 2 and n == BATCH and out.shape[1] != c:
        return (f"expected {c} logits per sample (the domain's {c} classes), found {out.shape[1]} "
                f"(output shape {tuple(out.shape)}); use a model trained on the domain's {c} classes "
                f"(labels 0..{c - 1})")
    if tuple(out.shape) != (BATCH, c):
        return (f"expected logits of shape ({BATCH}, {c}) for a batch of {BATCH}, found {tuple(out.shape)}; "
                f"forward(x) must return one row of {c} logits per sample")
    return _finite(out, on)


def check_classifier(model, dom, x, y, use) -> str | None:
    return _logits(model(x), dom)


def check_realness(model, dom, x, y, use) -> str | None:
    out = model(x)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (BATCH,):
        found = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        fix = ("; return D(x).squeeze(1)" if found == (BATCH, 1) else
               "; a classifier is kind 'classifier', not 'realness'" if isinstance(found, tuple) and len(found) == 2
               else "")
        return (f"expected one 'real' logit per sample (a discriminator, kind 'realness'): shape ({BATCH},) "
                f"for a batch of {BATCH}, found {found}{fix}")
    return _finite(out, "real test examples")


def check_proxy(model, dom, x, y, use) -> str | None:
    kind = model_kind(use.domain, use.model)
    if kind == "classifier":
        return check_classifier(model, dom, x, y, use)
    if kind == "realness":
        return check_realness(model, dom, x, y, use)
    out = model(x)   # a plug-in kind: its own class reads the output
    return _finite(out, "real test examples") if isinstance(out, torch.Tensor) else None


def check_judge(model, dom, x, y, use) -> str | None:
    problem = check_classifier(model, dom, x, y, use)
    if problem or "head" not in use.flags or not hasattr(model, "head"):
        return problem
    # The referee reads a judge that is also a feature space as head(features(x)).
    problem = check_features(model, dom, x, y, use)
    if problem:
        return problem
    problem = _logits(model.head(model.features(x)), dom)
    return f"head(features(x)) (how the referee reads it): {problem}" if problem else None


def check_features(model, dom, x, y, use) -> str | None:
    features = getattr(model, "features", None)
    if not callable(features):
        return (f"expected a method features(x) returning (batch, k) features, found none on "
                f"{type(model).__name__}; add features(x) (for a classifier, its penultimate layer)")
    out = features(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or len(out) != BATCH or out.shape[1] < 1:
        found = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return (f"expected features(x) of shape ({BATCH}, k) for a batch of {BATCH}, found {found}; "
                "flatten them to one vector per sample")
    return _finite(out, "real test examples")


def check_generator(model, dom, x, y, use) -> str | None:
    latent = getattr(model, "latent_dim", None)
    if not isinstance(latent, int) or isinstance(latent, bool) or latent < 1:
        found = f"{type(model).__name__} with no integer latent_dim" if latent is None or not isinstance(latent, int) \
            else f"latent_dim = {latent!r}"
        return (f"expected a generator: a module with an integer latent_dim and forward(z) -> samples of "
                f"shape (n, {', '.join(map(str, dom.shape))}); found {found}; set settings.{use.setting} to a "
                f"generator of the domain (default {use.default!r})")
    from optbench.models.gan import sample_latents
    out = model(sample_latents(BATCH, 0, latent))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (BATCH, *dom.shape):
        found = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return (f"expected forward(z) of {BATCH} latents to give samples of shape {(BATCH, *dom.shape)} "
                f"(the domain's shape), found {found}; use a generator trained on the domain's data")
    return _finite(out, f"{BATCH} standard normal latents") or _trainable(model, use)


def _trainable(model, use: Use) -> str | None:
    if "trainable" in use.flags and not any(True for _ in model.parameters()):
        return (f"expected weights to fine-tune (the source trains them), found none on "
                f"{type(model).__name__}; an exact model cannot be fine-tuned: name a trained one")
    return None


def _timesteps(model) -> int:
    from optbench.models.diffusion import SCHEDULER_CONFIG
    config = getattr(model, "scheduler_config", None) or SCHEDULER_CONFIG
    return int(config.get("num_train_timesteps", SCHEDULER_CONFIG["num_train_timesteps"]))


def _unet_config_problem(model, dom) -> str | None:
    """A UNet's class embeddings (the classes plus the null label) and image size."""
    c = dom.num_classes
    config = getattr(model, "config", None)
    embeds = getattr(config, "num_class_embeds", None)
    fix = (f"train it with num_class_embeds = {c + 1}: labels 0..{c - 1} the domain's classes, {c} the "
           "null label of classifier-free guidance")
    if embeds is None:
        return (f"expected a class-conditional model with config.num_class_embeds = {c + 1} (the domain's {c} "
                f"classes and the null label), found none (an unconditional model); {fix}")
    if embeds != c + 1:
        return (f"expected config.num_class_embeds = {c + 1} (the domain's {c} classes and the null label), "
                f"found {embeds}: its null label would be {embeds - 1}"
                f"{', a real class' if embeds - 1 < c else ''}; {fix}")
    if not dom.is_image:
        return None
    size = getattr(config, "sample_size", None)
    if size is not None:
        hw = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        if hw != tuple(dom.shape[1:]):
            return (f"expected config.sample_size {dom.shape[1]} x {dom.shape[2]} (the domain's images), "
                    f"found {size}; use a model trained at the domain's size")
    for key in ("in_channels", "out_channels"):
        value = getattr(config, key, None)
        if value is not None and value != dom.shape[0]:
            return (f"expected config.{key} = {dom.shape[0]} (the domain's channels), found {value}; "
                    "use a model trained on the domain's images")
    return None


def _scheduler_problem(model, use: Use) -> str | None:
    from optbench.models.diffusion import SCHEDULER_CONFIG
    config = getattr(model, "scheduler_config", None) or SCHEDULER_CONFIG
    if config != SCHEDULER_CONFIG:   # the shipped one builds: spare the import of diffusers
        from optbench.pressure.guidance import make_ddim
        try:
            make_ddim("none", config)
        except Exception as e:
            return f"its scheduler config does not build a DDIM scheduler: {first_line(e)}"
    kind = config.get("prediction_type", "epsilon")   # diffusers' default
    if "epsilon" in use.flags and kind != "epsilon":
        return (f"classifier guidance adds the classifier's gradient to a noise prediction: expected "
                f"prediction_type 'epsilon', found {kind!r}; use guidance = 'cfg' or an epsilon model")
    return None


def check_diffusion(model, dom, x, y, use) -> str | None:
    from optbench.models.diffusion import to_model_range
    problem = _unet_config_problem(model, dom) or _scheduler_problem(model, use)
    if problem:
        return problem
    null = torch.full_like(y, dom.num_classes)
    xt = to_model_range(torch.cat([x, x]), dom.bounds)
    out = model(xt, torch.tensor(_timesteps(model) // 2), class_labels=torch.cat([y, null]))
    sample = getattr(out, "sample", None)
    if not isinstance(sample, torch.Tensor) or tuple(sample.shape) != tuple(xt.shape):
        found = tuple(sample.shape) if isinstance(sample, torch.Tensor) else f"{type(out).__name__} without .sample"
        return (f"expected model(x_t, t, class_labels=y).sample of shape {tuple(xt.shape)} (a noise "
                f"prediction per input), found {found}")
    return _finite(sample, "real test examples (labels and the null label)") or _trainable(model, use)


def check_noisy_classifier(model, dom, x, y, use) -> str | None:
    from optbench.models.diffusion import to_model_range
    t = torch.full((BATCH,), _timesteps(model) // 2)
    return _logits(model(to_model_range(x, dom.bounds), t), dom)


def check_loads(model, dom, x, y, use) -> str | None:
    return None   # a plug-in source's model: how it is called is the source's own


CHECKS: dict[str, Callable] = {
    "proxy": check_proxy, "judge": check_judge, "features": check_features, "generator": check_generator,
    "diffusion": check_diffusion, "noisy_classifier": check_noisy_classifier, "load": check_loads,
}
CALLS = {"proxy": "model(x)", "judge": "model(x)", "features": "model.features(x)",
         "generator": "model(z)", "diffusion": "model(x_t, t, class_labels=y).sample",
         "noisy_classifier": "model(x_t, t)", "load": "model(x)"}
