"""Draw the figures of docs/concepts.md (docs/img/concepts-*.png).

Run: .venv/bin/python scripts/make_concept_figures.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import botcore

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"


def resize_paths() -> None:
    t = np.linspace(0, 1, 24, endpoint=False)
    x = np.sin(2 * np.pi * t) + 0.4 * np.sin(6 * np.pi * t)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=True)
    cases = [
        ("shrink 24 -> 12 (one Haar level)", 12, "haar"),
        ("shrink 24 -> 9 (fractional 24 -> 18, then one level)", 9, "haar"),
        ("grow 24 -> 56 (one db2 level to 48, then fractional 48 -> 56)", 56, "db2"),
    ]
    for ax, (title, m, wavelet) in zip(axes, cases):
        y = botcore.resize(x, (m,), wavelet=wavelet, gain="function")
        ax.step(np.arange(24) / 24, x, where="post", color="0.6", label="source (24 samples)")
        ax.step(np.arange(m) / m, y, where="post", color="C0", lw=2, label=f"resized ({m})")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("position along the axis (fraction of its length)")
    axes[0].set_ylabel('value (gain="function")')
    axes[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(OUT / "concepts-resize.png", dpi=110)
    plt.close(fig)


def energy_bands() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(16, 64, 64))
    grids = np.meshgrid(*(np.linspace(0, 2 * np.pi, n, endpoint=False) for n in noise.shape), indexing="ij")
    smooth = np.cos(grids[0]) * np.sin(2 * grids[1]) + np.cos(grids[2] + 1.0)
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for label, x in [("white noise (like trained weights)", noise), ("smooth signal", smooth)]:
        p = botcore.decompose(x, 3)
        total = float(np.sum(x**2))
        shares = [float(np.sum(p.approx**2)) / total]
        names = ["approx (level 3)"]
        for lvl, bands in zip((3, 2, 1), p.details):
            shares.append(sum(float(np.sum(v**2)) for v in bands.values()) / total)
            names.append(f"details level {lvl}")
        ax.plot(names, shares, marker="o", label=label)
    ax.set_yscale("log")
    ax.set_ylabel("share of energy")
    ax.set_title("Where the energy of a (16, 64, 64) signal sits (Haar)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "concepts-energy.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    resize_paths()
    energy_bands()
    print("wrote", sorted(p.name for p in OUT.glob("concepts-*.png")))
