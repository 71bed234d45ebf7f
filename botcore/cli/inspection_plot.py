"""The figure of ``botcore inspect``: energy per wavelet band and what a shrink keeps.

Contract: :func:`draw` takes a pyplot module and a list of
:class:`botcore.cli.inspection.Spectrum` and returns a new matplotlib Figure; it
writes no file (see :func:`botcore.cli.inspection.plot_spectra`). This module
imports nothing but the standard library at its top; matplotlib is passed in.

Layout: one row per weight module. Left panel: a stacked bar of the energy
shares, approximation band first, then detail levels from coarse to fine, with
the white-noise split drawn as tick marks on each bar. Right panel: the share
of energy one halving of each axis would keep (one marker per axis, plus "all
axes"), with the white-noise values dashed, and the planned resize's share when
given.
"""

from __future__ import annotations

__all__ = ["draw", "verdict"]

_AXIS_STYLE = {
    "depth": ("o", "#1b9e77"),
    "out": ("s", "#d95f02"),
    "in": ("^", "#7570b3"),
    "head": ("D", "#e7298a"),
    "head_dim": ("v", "#66a61e"),
    "in_head": ("P", "#e6ab02"),
    "in_head_dim": ("h", "#a6761d"),
    "all": ("X", "#222222"),
}


def _noise_split(levels):
    """White-noise shares (approx, detail coarse..fine) for per-axis ``levels``."""
    top = max(levels, default=0)
    kept, details = 1.0, []
    for k in range(1, top + 1):
        n = sum(1 for lv in levels if lv >= k)
        details.append(kept * (1 - 0.5 ** n))
        kept *= 0.5 ** n
    return kept, list(reversed(details))


def draw(plt, spectra, *, kept=None, title: str = ""):
    """A Figure with the band energies (left) and the halving shares (right)."""
    spectra = [s for s in spectra if s.details]
    n = len(spectra)
    depth = max((len(s.details) for s in spectra), default=0)
    height = 2.4 + 0.5 * max(n, 1)
    below = -0.5 / (0.5 * max(n, 1) + 0.2)  # legend anchor: about half an inch under each panel
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(13, height), sharey=True,
        gridspec_kw={"width_ratios": [1.15, 1], "wspace": 0.06},
    )
    fig.subplots_adjust(top=1 - 0.55 / height, bottom=1.25 / height)
    ys = list(range(n))[::-1]
    blues = plt.get_cmap("Blues")
    band_colors = ["#08306b"] + [blues(0.75 - 0.5 * i / max(depth - 1, 1)) for i in range(depth)]
    labels = ["approximation"] + [f"detail, level {depth - i}" + (" (finest)" if i == depth - 1 else "")
                                  for i in range(depth)]
    for y, s in zip(ys, spectra):
        shares = [s.approx] + list(reversed(s.details))  # approx, coarsest ... finest
        shares = shares + [0.0] * (depth + 1 - len(shares))
        left = 0.0
        for i, v in enumerate(shares):
            ax1.barh(y, 100 * v, left=100 * left, color=band_colors[i], height=0.62,
                     label=labels[i] if y == ys[0] else None)
            if v >= 0.07:
                ax1.text(100 * (left + v / 2), y, f"{100 * v:.0f}%", ha="center", va="center",
                         fontsize=8, color="white" if i < 2 else "black")
            left += v
        approx, details = _noise_split(s.levels)
        edge = 0.0
        for v in [approx] + details[:-1]:
            edge += v
            ax1.plot([100 * edge] * 2, [y - 0.38, y + 0.38], color="#c00000", lw=1.4)
    ax1.plot([], [], color="#c00000", lw=1.4, label="white-noise split")
    ax1.set_xlim(0, 100)
    ax1.set_yticks(ys)
    ax1.set_yticklabels([f"{s.name}  ({'x'.join(map(str, s.shape))})" for s in spectra], fontsize=9)
    ax1.set_xlabel("share of the module's energy (%)")
    ax1.set_title("Where the energy is: wavelet bands", fontsize=11, loc="left")
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, below), ncol=3, fontsize=8, frameon=False)

    seen = set()
    offsets = {}
    for y, s in zip(ys, spectra):
        keys = list(s.halving)
        for j, key in enumerate(keys):
            marker, color = _AXIS_STYLE.get(key, ("P", "#a6761d"))
            dy = (j - (len(keys) - 1) / 2) * 0.12
            offsets[key] = dy
            ax2.scatter(100 * s.halving[key], y + dy, marker=marker, color=color, s=38, zorder=3,
                        label=("halve " + ("every axis" if key == "all" else key)) if key not in seen else None)
            seen.add(key)
        if kept and s.name in kept and kept[s.name] is not None:
            ax2.scatter(100 * kept[s.name], y, marker="*", color="#e6ab02", edgecolor="black", s=160,
                        zorder=4, label="planned resize" if "planned" not in seen else None)
            seen.add("planned")
    noise_values = sorted({v for s in spectra for v in s.noise.values()})
    for v in noise_values:
        ax2.axvline(100 * v, color="#c00000", ls="--", lw=1)
        ax2.text(100 * v + 0.8, (ys[0] if ys else 0) + 0.9, f"{100 * v:g}%", color="#c00000", fontsize=8,
                 ha="left", va="top", rotation=90)
    ax2.plot([], [], color="#c00000", ls="--", lw=1, label="white noise keeps")
    ax2.set_xlim(0, 102)
    ax2.set_ylim(-0.6, (ys[0] if ys else 0) + 0.95)
    ax2.set_xlabel("energy kept (%)")
    ax2.set_title("What a shrink keeps: one halving per axis", fontsize=11, loc="left")
    ax2.grid(axis="x", color="#dddddd", lw=0.6)
    ax2.set_axisbelow(True)
    ax2.legend(loc="upper center", bbox_to_anchor=(0.5, below), ncol=3, fontsize=8, frameon=False)
    head = title or "Spectral inspection"
    fig.suptitle(head + "\n" + verdict(spectra), fontsize=11, x=0.01, ha="left", y=1 - 0.05 / height,
                 va="bottom", linespacing=1.6)
    return fig


def verdict(spectra) -> str:
    """One sentence: do the modules keep more under halving than white noise would?"""
    gaps = [s.halving["all"] - s.noise["all"] for s in spectra if "all" in s.halving]
    if not gaps:
        return "No module has an axis that can be halved."
    above = sum(g > 0.05 for g in gaps)
    if above == 0:
        return (f"All {len(gaps)} modules sit at white-noise level: halving every axis keeps about what it "
                "would keep of random weights (neighbouring weights are uncorrelated).")
    return (f"{above} of {len(gaps)} modules keep clearly more than white noise when every axis is halved "
            "(their weights are smooth along the halved axes).")
