"""Spectral inspection: where a weight signal's energy lies across wavelet bands.

Contract: :func:`spectrum` decomposes one signal (an array plus axis roles,
e.g. a role stacked over layers into ``(depth, out, in)``) with
:func:`botcore.decompose` and returns the share of its energy in the
approximation band and in the detail bands of each level, plus the share that
one halving of each axis alone would keep. :func:`energy_kept` answers "how
much of this module does a planned resize keep": the energy of the
orthonormal (``gain="paper"``) result over the source's, which for a dyadic
shrink is exactly the energy of the approximation band at the planned levels.
Nothing here modifies its inputs. Module top imports NumPy and the standard
library only; matplotlib is imported by :func:`plot_spectra` alone.

Shares are computed from the bands themselves (they sum to 1). Levels stop
where an axis would become odd, so periodization adds no padding and, for an
orthogonal wavelet, the shares are exact fractions of the squared Frobenius
norm (Parseval). A weight tensor whose neighbouring entries are uncorrelated
(white noise) keeps 1/2 per halved axis: the ``noise`` reference.

Examples
--------
>>> import numpy as np
>>> smooth = np.ones((4, 8, 8))
>>> s = spectrum(smooth, roles=("depth", "out", "in"), name="const")
>>> round(s.approx, 6), s.levels
(1.0, (2, 3, 3))
>>> noise = np.random.default_rng(0).normal(size=(8, 64, 64))
>>> n = spectrum(noise, roles=("depth", "out", "in"))
>>> abs(n.halving["all"] - 0.125) < 0.01, n.noise["all"]
(True, 0.125)
>>> round(energy_kept(smooth, (2, 4, 4)), 6)
1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..planning import plan
from ..resize import resize
from ..roles import normalize_roles
from ..transform import decompose

__all__ = ["Spectrum", "energy_kept", "format_table", "plot_spectra", "spectrum", "spectrum_table"]


@dataclass(frozen=True)
class Spectrum:
    """Energy shares of one weight signal.

    Attributes
    ----------
    name : str
    shape : tuple of int
    roles : tuple of str
    levels : tuple of int
        Decomposition levels per axis (0: the axis was not transformed).
    approx : float
        Share of the energy in the coarsest approximation band.
    details : tuple of float
        Share in the detail bands of each level, **finest first** (``details[0]``
        is level 1, what one halving throws away).
    halving : dict
        Share kept by one halving of a single axis, keyed by the axis' role (or
        ``"axis<i>"`` when roles repeat), and ``"all"`` for halving every
        transformed axis at once. Axes that cannot halve (odd or size 1) are absent.
    noise : dict
        The same keys, for white noise: ``0.5`` per axis, ``0.5 ** n`` for ``"all"``.
    """

    name: str
    shape: tuple
    roles: tuple
    levels: tuple
    approx: float
    details: tuple
    halving: dict = field(default_factory=dict)
    noise: dict = field(default_factory=dict)


def _axis_levels(shape, roles, max_level: int) -> tuple[int, ...]:
    levels = []
    for n, role in zip(shape, roles):
        k = 0
        while role != "fixed" and k < max_level and n % 2 == 0 and n >= 2:
            n //= 2
            k += 1
        levels.append(k)
    return tuple(levels)


def _energy(x) -> float:
    a = np.asarray(x, dtype=np.float64)
    return float(np.vdot(a, a).real)


def _axis_keys(roles) -> list[str]:
    keys = []
    for i, role in enumerate(roles):
        keys.append(role if list(roles).count(role) == 1 else f"axis{i}")
    return keys


def spectrum(x, *, roles=None, name: str = "", max_level: int = 3, wavelet: str = "haar",
             mode: str = "periodization") -> Spectrum:
    """Energy shares of ``x`` per wavelet band and level.

    Parameters
    ----------
    x : array
        A float array (numpy, or anything :func:`numpy.asarray` converts), or a
        :class:`botcore.WeightSignal` (its roles and name are used).
    roles : sequence of str, optional, keyword-only
        One role per axis; ``fixed`` axes are not transformed. Default: every
        axis ``"out"``.
    name : str, keyword-only
        A label carried into the result.
    max_level : int, keyword-only
        Most levels per axis (fewer where an axis becomes odd).
    wavelet, mode : str, keyword-only
        As in :func:`botcore.decompose`.

    Returns
    -------
    Spectrum

    Examples
    --------
    >>> import numpy as np
    >>> x = np.repeat(np.random.default_rng(0).normal(size=(4, 3)), 2, axis=1)  # columns in pairs
    >>> s = spectrum(x, roles=("out", "in"), max_level=1)
    >>> s.levels, round(s.halving["in"], 6), s.halving["out"] < 1
    ((1, 1), 1.0, True)
    """
    data = getattr(x, "data", x)
    if roles is None and hasattr(x, "roles"):
        roles = x.roles
    name = name or getattr(x, "name", "")
    a = np.asarray(data)
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    roles = normalize_roles(roles, a.ndim)
    levels = _axis_levels(a.shape, roles, max_level)
    keys = _axis_keys(roles)
    axes = tuple(i for i, lv in enumerate(levels) if lv > 0)
    if not axes:
        return Spectrum(name, a.shape, roles, levels, 1.0, (), {}, {})
    p = decompose(a, tuple(levels[i] for i in axes), wavelet=wavelet, mode=mode, axes=axes)
    approx = _energy(p.approx)
    per_level = [sum(_energy(v) for v in bands.values()) for bands in p.details]  # coarsest first
    total = approx + sum(per_level)
    if total == 0:
        total = 1.0
    finest = p.details[-1]
    finest_axes = p.axes[-1]
    low_finest = total - per_level[-1]  # energy of the level-1 approximation band
    halving, noise = {}, {}
    for pos, axis in enumerate(finest_axes):
        kept = low_finest + sum(_energy(v) for k, v in finest.items() if k[pos] == "a")
        halving[keys[axis]] = kept / total
        noise[keys[axis]] = 0.5
    halving["all"] = low_finest / total
    noise["all"] = 0.5 ** len(finest_axes)
    return Spectrum(
        name,
        tuple(a.shape),
        roles,
        levels,
        approx / total,
        tuple(e / total for e in reversed(per_level)),
        halving,
        noise,
    )


def energy_kept(x, shape, *, roles=None, wavelet: str = "haar", mode: str = "periodization") -> float:
    """Share of ``x``'s energy that a BoT resize to ``shape`` keeps.

    Computed as ``||resize(x, shape, gain="paper")||^2 / ||x||^2`` (orthonormal
    coefficients): for a dyadic shrink this is the energy of the approximation
    band at the planned levels; a grow with zero details keeps everything (1.0);
    a fractional area step counts with its orthonormal ``sqrt(ratio)`` factor.

    Examples
    --------
    >>> import numpy as np, botcore
    >>> x = np.random.default_rng(0).normal(size=(6, 32, 32))
    >>> p = botcore.decompose(x, 1)
    >>> bool(np.isclose(energy_kept(x, (3, 16, 16)), (p.approx ** 2).sum() / (x ** 2).sum()))
    True
    >>> round(energy_kept(x, (12, 64, 64)), 6)
    1.0
    """
    a = np.asarray(getattr(x, "data", x))
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    if roles is None and hasattr(x, "roles"):
        roles = x.roles
    total = _energy(a)
    if total == 0:
        return 1.0
    p = plan(a.shape, shape, wavelet=wavelet, mode=mode)
    if all(ax.levels <= 0 and ax.fraction is None for ax in p.axes) and _orthogonal(wavelet):
        return 1.0  # dyadic growth with zero details: an orthonormal synthesis keeps every bit of energy
    y = resize(a, shape, gain="paper", roles=roles, wavelet=wavelet, mode=mode)
    return _energy(y) / total


def _orthogonal(wavelet: str) -> bool:
    import pywt

    return bool(pywt.Wavelet(wavelet).orthogonal)


def format_table(headers, rows, *, align=None) -> str:
    """A plain-text table: one header line, a rule, one line per row.

    Examples
    --------
    >>> print(format_table(["module", "kept"], [["q", "0.125"], ["ffn_in", "0.5"]]))
    module  kept
    ------  -----
    q       0.125
    ffn_in  0.5
    """
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = list(align) if align is not None else ["<"] * len(headers)

    def line(r):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:5.1f}%"


def spectrum_table(spectra, *, kept=None) -> str:
    """The table ``botcore inspect`` prints: one row per module.

    Columns: shape, levels, approximation share, detail share per level
    (D1 = finest), the share one halving of each axis keeps (``depth/2``,
    ``out/2``, ``in/2``, ... and ``all/2`` for every axis at once; white noise
    keeps 50% per axis), and, when ``kept`` (a dict name -> share) is given,
    what the planned resize keeps.

    Examples
    --------
    >>> import numpy as np
    >>> s = spectrum(np.ones((2, 4, 4)), roles=("depth", "out", "in"), name="q", max_level=1)
    >>> print(spectrum_table([s]))  # doctest: +NORMALIZE_WHITESPACE
    module  shape  levels  approx      D1  depth/2   out/2    in/2   all/2
    ------  -----  ------  ------  ------  -------  ------  ------  ------
    q       2x4x4  1,1,1   100.0%    0.0%   100.0%  100.0%  100.0%  100.0%
    """
    spectra = list(spectra)
    depth = max((len(s.details) for s in spectra), default=0)
    axis_keys = []
    for s in spectra:
        for k in s.halving:
            if k != "all" and k not in axis_keys:
                axis_keys.append(k)
    order = ("depth", "head", "head_dim", "out", "in_head", "in_head_dim", "in")
    axis_keys.sort(key=lambda k: order.index(k) if k in order else len(order))
    axis_keys.append("all")
    headers = ["module", "shape", "levels", "approx"] + [f"D{i + 1}" for i in range(depth)]
    headers += [f"{k}/2" for k in axis_keys]
    if kept is not None:
        headers.append("planned keeps")
    rows = []
    for s in spectra:
        row = [s.name, "x".join(map(str, s.shape)), ",".join(map(str, s.levels)), _pct(s.approx)]
        row += [_pct(s.details[i]) if i < len(s.details) else "-" for i in range(depth)]
        row += [_pct(s.halving.get(k)) for k in axis_keys]
        if kept is not None:
            row.append(_pct(kept.get(s.name)))
        rows.append(row)
    align = ["<", "<", "<"] + [">"] * (len(headers) - 3)
    return format_table(headers, rows, align=align)


def plot_spectra(spectra, path, *, kept=None, title: str = "") -> str:
    """Draw the spectra to ``path`` (PNG, SVG or PDF by extension); returns ``path``.

    Left: per module, the energy in the approximation band and in each detail
    level (a stacked bar). Right: the share one halving of each axis keeps,
    against the white-noise reference (dashed), and the planned resize's share
    when ``kept`` is given. The file is written to a temporary name in the same
    folder and renamed, so a failed draw leaves nothing behind.
    """
    import os
    import tempfile

    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    from .inspection_plot import draw

    spectra = list(spectra)
    fig = draw(plt, spectra, kept=kept, title=title)
    folder = os.path.dirname(os.path.abspath(path)) or "."
    suffix = os.path.splitext(path)[1] or ".png"
    fd, tmp = tempfile.mkstemp(prefix=".botcore-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=130, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
