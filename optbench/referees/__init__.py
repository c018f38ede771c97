"""Referee metrics: numbers saying how far a batch of outputs is from the data. A
referee sees only the outputs, their targets and their starting points; it knows
nothing about how they were made."""
from __future__ import annotations

import torch

from optbench.domains import get_domain
from optbench.models.checkpoints import load_model
from optbench.referees.classifiers import logits_of, target_readout
from optbench.referees.distribution import extract, fid_kid, prdc, within_class_diversity

DISTRIBUTION_METRICS = ("fid", "kid", "kid_std", "precision", "recall", "density", "coverage")

METRICS = {
    "proxy_prob": "proxy's mean probability of the target class",
    "proxy_logit": "proxy's mean target logit",
    "proxy_hit": "share of samples the proxy classifies as the target",
    "judge_<name>_prob": "one judge's mean target probability",
    "judge_<name>_agree": "share of samples where that judge's class equals the proxy's",
    "judge_prob": "judge ensemble (mean probability over the domain's ENSEMBLE judges): mean target probability",
    "judge_hit": "share of samples the judge ensemble classifies as the target",
    "judge_agree": "share of samples where the ensemble's class equals the proxy's",
    "gap": "proxy_prob - judge_prob, the Goodhart gap",
    "fid": "Frechet distance to the reference set in the feature net's space (torchmetrics)",
    "kid": "kernel (polynomial MMD) distance to the reference set, unbiased (torchmetrics)",
    "kid_std": "KID's standard deviation over subsets",
    "precision": "share of outputs inside the reference k-NN manifold (Naeem et al. 2020)",
    "recall": "share of reference points inside the outputs' k-NN manifold",
    "density": "how many reference balls hold each output, normalised (1 = like real data)",
    "coverage": "share of reference points with an output inside their k-NN ball",
    "diversity": "mean pairwise feature distance between outputs of the same target class",
    "out_of_range": "share of pixels outside [0, 1] (by more than 1/255)",
    "l2": "mean L2 distance from the starting point (pixels in [0, 1])",
    "linf": "mean Linf distance from the starting point",
    "diverged_frac": "share of samples with NaN or inf pixels or proxy logits; excluded from the rest",
}


class Referee:
    """Scores batches of outputs for one domain. Built once; caches reference features."""

    def __init__(self, domain: str, proxy: str, device: str | torch.device = "cpu",
                 checkpoint_root=None):
        dom = get_domain(domain)
        self.proxy = load_model(domain, proxy, device, root=checkpoint_root)
        self.judges = {name: load_model(domain, name, device, root=checkpoint_root)
                       for name in dom.JUDGES}
        self.ensemble = dom.ENSEMBLE
        self.feature_net = self.judges.get(dom.FEATURE_NET) or load_model(
            domain, dom.FEATURE_NET, device, root=checkpoint_root)
        x_ref, _ = dom.load_split("reference")
        self.ref_features = extract(self.feature_net, x_ref)

    def distribution(self, x: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, float]:
        feats = extract(self.feature_net, x)
        out = {"diversity": within_class_diversity(feats, target) if target is not None else float("nan")}
        if len(feats) < 6:  # PRDC needs k+1 points, FID a covariance
            return out | {m: float("nan") for m in DISTRIBUTION_METRICS}
        return out | fid_kid(self.ref_features, feats) | prdc(self.ref_features, feats)

    def evaluate(self, x: torch.Tensor, target: torch.Tensor, start: torch.Tensor) -> dict[str, float]:
        proxy = target_readout(logits_of(self.proxy, x), target)
        finite = torch.isfinite(x).flatten(1).all(1) & torch.isfinite(proxy["logit"])
        out = {"diverged_frac": float(1 - finite.double().mean()), "n_finite": int(finite.sum())}
        x, target, start = x[finite], target[finite], start[finite]
        proxy = {k: v[finite] for k, v in proxy.items()}
        out |= {"proxy_prob": _mean(proxy["prob"]), "proxy_logit": _mean(proxy["logit"]),
                "proxy_hit": _mean(proxy["pred"] == target)}
        probs = []
        for name, judge in self.judges.items():
            logits = logits_of(judge, x)
            r = target_readout(logits, target)
            out[f"{name}_prob"] = _mean(r["prob"])
            out[f"{name}_agree"] = _mean(r["pred"] == proxy["pred"])
            if name in self.ensemble:
                probs.append(logits.softmax(1))
        ens = torch.stack(probs).mean(0) if probs else torch.empty(0, 1)
        ens_pred = ens.argmax(1)
        out["judge_prob"] = _mean(ens.gather(1, target[:, None]).squeeze(1)) if len(x) else float("nan")
        out["judge_hit"] = _mean(ens_pred == target)
        out["judge_agree"] = _mean(ens_pred == proxy["pred"])
        out["gap"] = out["proxy_prob"] - out["judge_prob"]
        delta = (x - start).flatten(1)
        out["l2"], out["linf"] = _mean(delta.norm(dim=1)), _mean(delta.abs().amax(1))
        out["out_of_range"] = _mean(((x < -1 / 255) | (x > 1 + 1 / 255)).flatten(1).double().mean(1))
        out |= self.distribution(x, target)
        return out


def _mean(t: torch.Tensor) -> float:
    return float(t.double().mean()) if t.numel() else float("nan")
