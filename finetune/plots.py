"""PNG plots for the training card and the ablation (matplotlib, no display needed).

- ``loss.png``: the training loss per step, with a moving average.
- ``before_after.png``: each held-out query's nDCG@10 before (x) and after (y) training;
  points above the diagonal got better.
- ``ablation.png``: each arm's change of nDCG@10 against the full recipe, with its 95 % interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

LOSS_PNG = "loss.png"
SCATTER_PNG = "before_after.png"
ABLATION_PNG = "ablation.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    return plt


def loss_plot(losses: Sequence[float], path: Path, window: int = 10) -> Path:
    """The loss of each training step, and its moving average over ``window`` steps."""
    if not losses:
        raise ValueError("no losses to plot: the training ran no step.")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, color="#9ab", linewidth=1, label="loss")
    if len(losses) >= window:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, color="#c33", linewidth=2, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("InfoNCE loss")
    ax.set_title("Training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def before_after_plot(before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]],
                      path: Path, metric: str = "ndcg@10") -> Path:
    """Per held-out query: ``metric`` before (x) vs after (y) training, with the diagonal."""
    qids = sorted(before.keys() & after.keys())
    if not qids:
        raise ValueError("no query has scores before and after training.")
    x = np.array([before[q][metric] for q in qids])
    y = np.array([after[q][metric] for q in qids])
    rng = np.random.default_rng(0)  # jitter: many queries share 0 or 1
    jx, jy = (rng.uniform(-0.012, 0.012, len(qids)) for _ in range(2))
    colors = np.where(y > x, "#2a7", np.where(y < x, "#c33", "#888"))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot([0, 1], [0, 1], color="#bbb", linewidth=1)
    ax.scatter(x + jx, y + jy, s=12, c=colors, alpha=0.7)
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel(f"{metric} before")
    ax.set_ylabel(f"{metric} after")
    ax.set_title(f"{int((y > x).sum())} better, {int((y < x).sum())} worse of {len(qids)}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def ablation_plot(report: Mapping, path: Path, metric: str = "ndcg@10") -> Path:
    """Horizontal bars: each arm's change of ``metric`` vs the full recipe, 95 % interval as error bars."""
    arms = [(name, arm["vs_full"][metric]) for name, arm in report["arms"].items() if arm.get("vs_full")]
    if not arms:
        raise ValueError("the ablation has no arm besides the full recipe.")
    names = [n for n, _ in arms]
    delta = np.array([s["delta"] for _, s in arms])
    low = delta - np.array([s["ci95"][0] for _, s in arms])
    high = np.array([s["ci95"][1] for _, s in arms]) - delta
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 0.5 * len(arms) + 1.5), dpi=100)
    ax.barh(names, delta, xerr=[low, high], color=np.where(delta >= 0, "#2a7", "#c33"), capsize=3)
    ax.axvline(0, color="#555", linewidth=1)
    for i, (_, s) in enumerate(arms):
        ax.annotate(f"p={s['p_value']:.3f}", (0, i), xytext=(4, 6), textcoords="offset points", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"change of held-out {metric} vs the full recipe")
    ax.set_title("Each refinement step switched off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
