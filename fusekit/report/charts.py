"""Small inline SVG charts (no script, no external font, no network): grouped bars, horizontal bars, lines.

Numbers are written with a fixed precision, so the same data gives the same bytes.
"""

from __future__ import annotations

import math
from html import escape
from typing import Sequence

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
FONT = 'font-family="sans-serif" font-size="11"'


def _n(value: float) -> str:
    return "0" if math.isnan(value) else f"{value:.1f}".rstrip("0").rstrip(".")


def _ticks(top: float, count: int = 4) -> list[float]:
    if top <= 0:
        return [0.0]
    raw = top / count
    magnitude = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 0.1
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    ticks, value = [0.0], 0.0
    while ticks[-1] < top * 0.9999:  # up to the first tick at or above the top
        value += step
        ticks.append(round(value, 6))
    return ticks


def _legend(names: Sequence[str], x: float, y: float) -> list[str]:
    parts = []
    for i, name in enumerate(names):
        parts.append(f'<rect x="{_n(x)}" y="{_n(y + 15 * i)}" width="10" height="10" '
                     f'fill="{PALETTE[i % len(PALETTE)]}"/>'
                     f'<text x="{_n(x + 14)}" y="{_n(y + 15 * i + 9)}" {FONT}>{escape(name)}</text>')
    return parts


def bars(categories: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], title: str = "",
         width: int = 640, height: int = 240, label: str = "") -> str:
    """Grouped vertical bars: one group per category, one bar per series."""
    left, right, top, bottom = 44, 130, 22, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([max(v, default=0) for _, v in series] + [0])
    ticks = _ticks(peak)
    scale_top = max(ticks[-1], 1e-9)
    group = plot_w / max(1, len(categories))
    bar = group * 0.8 / max(1, len(series))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
             f'<text x="{left}" y="14" {FONT} font-weight="bold">{escape(title)}</text>']
    for t in ticks:
        y = top + plot_h - plot_h * t / scale_top
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{_n(y)}" y2="{_n(y)}" stroke="#ddd"/>'
                     f'<text x="{left - 4}" y="{_n(y + 4)}" {FONT} text-anchor="end">{_n(t)}</text>')
    for i, category in enumerate(categories):
        x0 = left + group * i + group * 0.1
        for j, (name, values) in enumerate(series):
            value = values[i]
            h = plot_h * value / scale_top
            parts.append(f'<rect x="{_n(x0 + bar * j)}" y="{_n(top + plot_h - h)}" width="{_n(bar)}" '
                         f'height="{_n(h)}" fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(category)}, '
                         f'{escape(name)}: {_n(value)}</title></rect>')
        parts.append(f'<text x="{_n(left + group * (i + 0.5))}" y="{top + plot_h + 14}" {FONT} '
                     f'text-anchor="middle">{escape(category)}</text>')
    if label:
        parts.append(f'<text x="{left}" y="{height - 6}" {FONT} fill="#555">{escape(label)}</text>')
    parts += _legend([name for name, _ in series], left + plot_w + 12, top)
    parts.append("</svg>")
    return "".join(parts)


def hbars(labels: Sequence[str], values: Sequence[float], title: str = "", width: int = 640) -> str:
    """One horizontal bar per label, its value written at its end (the funnel)."""
    row, left, top = 22, 150, 22
    height = top + row * len(labels) + 10
    plot_w = width - left - 70
    peak = max(list(values) + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
             f'<text x="4" y="14" {FONT} font-weight="bold">{escape(title)}</text>']
    for i, (label, value) in enumerate(zip(labels, values)):
        y = top + row * i
        w = plot_w * value / peak
        parts.append(f'<text x="{left - 6}" y="{y + 14}" {FONT} text-anchor="end">{escape(label)}</text>'
                     f'<rect x="{left}" y="{y + 3}" width="{_n(w)}" height="{row - 6}" fill="{PALETTE[0]}"/>'
                     f'<text x="{_n(left + w + 4)}" y="{y + 14}" {FONT}>{int(value):,}</text>')
    parts.append("</svg>")
    return "".join(parts)


def lines(x: Sequence[float], series: Sequence[tuple[str, Sequence[float | None]]], title: str = "",
          width: int = 400, height: int = 220, x_label: str = "epoch") -> str:
    """Line chart with markers; ``None`` values are gaps."""
    left, right, top, bottom = 44, 90, 22, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, vs in series for v in vs if v is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    lo = min(lo, 0.0) if lo >= 0 and hi <= 1.0 else lo
    if hi - lo < 1e-9:
        hi = lo + 1.0
    x_lo, x_hi = (min(x), max(x)) if x else (0, 1)
    span = (x_hi - x_lo) or 1

    def px(v: float) -> float:
        return left + plot_w * (v - x_lo) / span

    def py(v: float) -> float:
        return top + plot_h - plot_h * (v - lo) / (hi - lo)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
             f'<text x="{left}" y="14" {FONT} font-weight="bold">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>']
    for t in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="{left - 4}" y="{_n(py(t) + 4)}" {FONT} text-anchor="end">{t:.3g}</text>')
    for t in sorted({x_lo, x_hi}):
        parts.append(f'<text x="{_n(px(t))}" y="{top + plot_h + 14}" {FONT} text-anchor="middle">{t:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 4}" {FONT} text-anchor="middle">'
                 f'{escape(x_label)}</text>')
    for j, (_name, vs) in enumerate(series):
        colour = PALETTE[j % len(PALETTE)]
        points = [(px(a), py(b)) for a, b in zip(x, vs) if b is not None]
        if len(points) > 1:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                         + " ".join(f"{_n(a)},{_n(b)}" for a, b in points) + '"/>')
        parts += [f'<circle cx="{_n(a)}" cy="{_n(b)}" r="2.5" fill="{colour}"/>' for a, b in points]
    parts += _legend([name for name, _ in series], left + plot_w + 10, top)
    parts.append("</svg>")
    return "".join(parts)
