"""Wavelet filter banks and the periodized polyphase stencils every backend uses.

Contract: :func:`filter_bank` turns a wavelet name (anything PyWavelets lists as
discrete) into an immutable :class:`FilterBank` of float64 NumPy filters. The
bank also describes, as plain integers and floats, how one periodized analysis
or synthesis step reads its input (:meth:`FilterBank.analysis_stencil`,
:meth:`FilterBank.synthesis_stencil`), so that a backend only slices, scales and
adds; the index arithmetic lives here, once. The stencils reproduce
``pywt.dwt``/``pywt.idwt`` with ``mode="periodization"`` exactly for every even
length, including lengths shorter than the filter.

PyWavelets is imported lazily (inside :func:`filter_bank`), so importing
botcore loads NumPy only.

Examples
--------
>>> bank = filter_bank("haar")
>>> bank.name, bank.length, bank.orthogonal
('haar', 2, True)
>>> st = bank.analysis_stencil(8, "a")
>>> st.count, st.step, [start for start, _ in st.taps]
(4, 2, [1, 0])
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .errors import WaveletError

__all__ = ["FilterBank", "Stencil", "filter_bank", "wavelet_names"]


@dataclass(frozen=True)
class Stencil:
    """How one output phase is read from a periodically extended input.

    ``y[k] = sum(w * x_ext[start + step * k] for start, w in taps)`` for
    ``k < count``, where ``x_ext = x[index]`` along the axis (``index`` is
    ``None`` when no extension is needed).
    """

    index: np.ndarray | None
    taps: tuple[tuple[int, float], ...]
    step: int
    count: int


@dataclass(frozen=True, eq=False)
class FilterBank:
    """The four filters of a discrete wavelet, as float64 arrays."""

    name: str
    dec_lo: np.ndarray
    dec_hi: np.ndarray
    rec_lo: np.ndarray
    rec_hi: np.ndarray
    orthogonal: bool

    @property
    def length(self) -> int:
        """Filter length (PyWavelets' ``dec_len``)."""
        return int(self.dec_lo.shape[0])

    def analysis_stencil(self, n: int, band: str) -> Stencil:
        """Stencil of one periodized analysis step on an even length ``n``.

        ``band`` is ``"a"`` (low pass) or ``"d"`` (high pass). The result has
        ``n // 2`` samples: ``y[k] = sum_j f[j] * x[(2k + F/2 - j) mod n]``.
        """
        return _analysis_stencil(self, n, band)

    def synthesis_stencil(self, half: int, band: str, phase: int) -> Stencil:
        """Stencil of one output phase (0: even samples, 1: odd) of a synthesis step.

        The step rebuilds ``2 * half`` samples from ``half`` coefficients:
        ``x[i] = sum_k c[k] * g[(i - 2k - 1 + F/2) mod 2*half]``.
        """
        return _synthesis_stencil(self, half, band, phase)


def wavelet_names() -> list[str]:
    """Names of every discrete wavelet PyWavelets knows.

    >>> "bior6.8" in wavelet_names()
    True
    """
    import pywt

    return list(pywt.wavelist(kind="discrete"))


@functools.cache
def filter_bank(wavelet: str) -> FilterBank:
    """Return the :class:`FilterBank` of a discrete wavelet known to PyWavelets.

    Parameters
    ----------
    wavelet : str
        A name such as ``"haar"``, ``"db2"``, ``"sym4"``, ``"coif3"``, ``"bior6.8"``.

    Raises
    ------
    WaveletError
        If the name is not a string, is a continuous wavelet, or is unknown.

    Examples
    --------
    >>> round(float(filter_bank("db2").dec_lo.sum()), 6)
    1.414214
    """
    if not isinstance(wavelet, str):
        raise WaveletError(
            f"wavelet must be a wavelet name (str), got {type(wavelet).__name__} {wavelet!r}; "
            "pass e.g. wavelet='haar'"
        )
    import pywt

    if wavelet in pywt.wavelist(kind="continuous"):
        raise WaveletError(
            f"wavelet {wavelet!r} is continuous; resizing needs a discrete wavelet. "
            "List them with botcore.wavelets.wavelet_names()"
        )
    try:
        w = pywt.Wavelet(wavelet)
    except ValueError:
        raise WaveletError(
            f"wavelet {wavelet!r} is unknown to PyWavelets; expected a discrete wavelet name "
            "such as 'haar', 'db2', 'sym4', 'coif3' or 'bior6.8' "
            "(all of them: botcore.wavelets.wavelet_names())"
        ) from None
    filters = [np.asarray(f, dtype=np.float64) for f in w.filter_bank]
    for f in filters:
        f.setflags(write=False)
    return FilterBank(wavelet, *filters, orthogonal=bool(w.orthogonal))


def _filter(bank: FilterBank, band: str, analysis: bool) -> np.ndarray:
    if band == "a":
        return bank.dec_lo if analysis else bank.rec_lo
    if band == "d":
        return bank.dec_hi if analysis else bank.rec_hi
    raise ValueError(f"band must be 'a' or 'd', got {band!r}")


def _extension(n: int, before: int, after: int) -> np.ndarray | None:
    if before == 0 and after == 0:
        return None
    return np.arange(-before, n + after) % n


def _analysis_stencil(bank: FilterBank, n: int, band: str) -> Stencil:
    if n % 2 or n <= 0:
        raise ValueError(f"analysis needs a positive even length, got {n}")
    f = _filter(bank, band, analysis=True)
    flen = f.shape[0]
    # y[k] = sum_j f[j] x[(2k + F/2 - j) mod n]; indices span [1 - F/2, n - 2 + F/2].
    before = after = flen // 2 - 1
    taps = tuple((flen - 1 - j, float(f[j])) for j in range(flen) if f[j] != 0.0)
    return Stencil(_extension(n, before, after), taps, 2, n // 2)


def _synthesis_stencil(bank: FilterBank, half: int, band: str, phase: int) -> Stencil:
    g = _filter(bank, band, analysis=False)
    flen = g.shape[0]
    t = 1 - flen // 2
    # x[2m + r] = sum_{j = r - t mod 2} g[j] c[(m - q_j) mod half], q_j = (j - r + t) / 2
    shifts = [(j, (j - phase + t) // 2) for j in range(flen) if (j - phase + t) % 2 == 0]
    qmax = max(q for _, q in shifts)
    qmin = min(q for _, q in shifts)
    before, after = max(qmax, 0), max(-qmin, 0)
    taps = tuple((before - q, float(g[j])) for j, q in shifts if g[j] != 0.0)
    return Stencil(_extension(half, before, after), taps, 1, half)
