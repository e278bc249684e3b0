"""The monitoring report: one self-contained HTML file (styles inline, plots as embedded PNG images,
no script and nothing fetched), readable offline and attachable to a ticket.

Per feature version: its status and alarms (each with the bins that moved most), then three plots —
the period's distribution against the baseline (shares per bin group, or per category), drift per
bucket against its threshold, and the null rate per bucket against the baseline's — and, when given,
the skew replay's figures and the stream sources' freshness. Plots are drawn by Matplotlib
(``pip install "parity[report]"``) in fixed colours: baseline blue, served orange, alarms red.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from parity.errors import ConfigError
from parity.monitor.bins import Bins
from parity.monitor.watch import FeatureWatch, window_label
from parity.semantics.expectations import Violation

BASELINE, SERVED, ALARM, THRESHOLD = "#1f77b4", "#ff7f0e", "#d62728", "#7f7f7f"
GROUPS = 50  # numeric distributions are drawn on this many groups of fine bins
CATEGORIES = 20


def _matplotlib() -> Any:
    """Matplotlib's object API (a ``Figure`` per plot, no pyplot: the caller's backend and global
    state are left alone)."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError('the HTML report draws its plots with Matplotlib: pip install "parity[report]"') from None
    return matplotlib, Figure


def render(watches: Sequence[FeatureWatch], *, title: str, generated_at: dt.datetime,
           skew: Mapping[str, Any] | None = None, freshness: Mapping[str, Mapping[str, Any]] | None = None,
           views: Sequence[tuple[str, int | None, float, int, Sequence[Violation]]] = ()) -> str:
    """The report; ``freshness`` is the stream sources' lag, ``views`` the views' freshness checks."""
    plt = _matplotlib()
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             f"<p class='meta'>generated {html.escape(generated_at.isoformat())}</p>",
             ("<table class='summary'><tr><th>feature</th><th>version</th><th>status</th><th>served values</th>"
             "<th>baseline</th><th>alarms</th></tr>")]
    for w in watches:
        parts.append(f"<tr><td><a href='#{_anchor(w)}'>{html.escape(w.feature)}</a></td><td>{html.escape(w.version)}"
                     f"</td><td class='{w.status}'>{w.status}</td><td>{w.served:,}</td>"
                     f"<td>{html.escape(w.baseline_origin or 'none recorded')}</td>"
                     f"<td>{len(w.alarms()) + sum(len(b) for b in w.breaches)}</td></tr>")
    parts.append("</table>")
    if skew is not None:
        parts.append(_skew_section(skew))
    if views:
        parts.append(_views_section(views))
    if freshness:
        parts.append(_freshness_section(freshness))
    for w in watches:
        parts.append(f"<section id='{_anchor(w)}'><h2>{html.escape(w.feature)} <small>@{html.escape(w.version)}</small>"
                     f" <span class='{w.status}'>{w.status}</span></h2>")
        broken = [(window, v) for window, found in zip(w.windows, w.breaches) for v in found]
        if broken:
            parts.append("<ul class='alarms'>")
            for (start, end), v in broken:
                parts.append(f"<li><b class='breach'>expectation</b> {window_label(start)} – {window_label(end)}: "
                             f"{html.escape(v.describe())}</li>")
            parts.append("</ul>")
        if w.bins is None or w.baseline is None:
            parts.append("<p>No baseline for this version: build a training set with this feature to record one.</p>"
                         "</section>")
            continue
        alarms = w.alarms()
        if alarms:
            parts.append("<ul class='alarms'>")
            for what, (start, end), result in alarms:
                moved = "; ".join(f"{c['bin']}: {_share(c['reference'])} → {_share(c['current'])}"
                                  for c in result.contributors)
                parts.append(f"<li><b>{what}</b> {window_label(start)} – {window_label(end)}: {result.method} "
                             f"{_num(result.value)} &gt; {_num(result.threshold)} ({html.escape(result.rule)}); "
                             f"moved most: {html.escape(moved)}</li>")
            parts.append("</ul>")
        parts.append(_img(plt, _distribution, w, "distribution vs baseline"))
        parts.append(_img(plt, _drift_over_time, w, "drift per bucket"))
        parts.append(_img(plt, _nulls_over_time, w, "null rate per bucket"))
        parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts)


def _img(plt: Any, draw: Any, w: FeatureWatch, alt: str) -> str:
    matplotlib, figure_class = plt
    buffer = io.BytesIO()
    with matplotlib.rc_context({"text.parse_math": False}):  # a served "$x_$" is text, not TeX
        figure = figure_class(figsize=(7.5, 2.6), dpi=80)
        axes = figure.subplots()
        draw(axes, w)
        axes.set_title(f"{w.feature}: {alt}", fontsize=9)
        axes.tick_params(labelsize=7)
        figure.tight_layout()
        figure.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f"<img class='plot' data-plot='{html.escape(alt)}' alt='{html.escape(w.feature + ': ' + alt)}' " \
           f"src='data:image/png;base64,{data}'>"


def _distribution(axes: Any, w: FeatureWatch) -> None:
    assert w.bins is not None and w.baseline is not None
    period = w.period
    current = period.counts if period is not None and period.counts.size else np.zeros(w.bins.size, np.int64)
    reference = w.baseline.counts
    labels, ref_share, cur_share = _grouped(w.bins, reference, current)
    x = np.arange(len(labels))
    if w.bins.kind == "numeric":
        axes.step(x, ref_share, where="mid", color=BASELINE, linewidth=2, label="baseline")
        axes.step(x, cur_share, where="mid", color=SERVED, linewidth=2, label="served")
        ticks = x[:: max(1, len(x) // 6)]
        axes.set_xticks(ticks, [labels[i] for i in ticks], fontsize=6)
    else:
        axes.bar(x - 0.2, ref_share, 0.4, color=BASELINE, label="baseline")
        axes.bar(x + 0.2, cur_share, 0.4, color=SERVED, label="served")
        axes.set_xticks(x, labels, fontsize=6, rotation=30)
    axes.set_ylabel("share", fontsize=7)
    axes.legend(fontsize=7)


def _grouped(bins: Bins, reference: np.ndarray, current: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    ref, cur = reference.astype(np.float64), current.astype(np.float64)
    if bins.kind == "numeric":  # outer bins kept apart, the fine ones summed in groups
        inner = len(bins.edges) - 1
        size = max(1, inner // GROUPS)
        cuts = [0, 1, *range(1 + size, inner + 1, size), inner + 1, inner + 2]
        cuts = sorted({min(c, inner + 2) for c in cuts})
        labels = [bins.label(0)] + [f"{bins.edges[a - 1]:.4g}" for a in cuts[1:-2]] + [bins.label(inner + 1)]
        ref = np.add.reduceat(ref, cuts[:-1])
        cur = np.add.reduceat(cur, cuts[:-1])
    else:
        order = np.argsort(-ref[:-1], kind="stable")[:CATEGORIES]
        labels = [str(bins.categories[i]) for i in order] + ["other"]
        ref = np.append(ref[order], ref.sum() - ref[order].sum())
        cur = np.append(cur[order], cur.sum() - cur[order].sum())
    return labels, ref / max(ref.sum(), 1.0), cur / max(cur.sum(), 1.0)


def _drift_over_time(axes: Any, w: FeatureWatch) -> None:
    times = [dt.datetime.fromtimestamp(start / 1e6, dt.UTC) for start, _ in w.windows]
    values = [r.value if r.value is not None else np.nan for r in w.drift]
    axes.plot(times, values, color=SERVED, marker=".", label=w.drift[0].method if w.drift else "drift")
    axes.plot(times, [r.threshold for r in w.drift], color=THRESHOLD, linestyle="--", label="threshold")
    hot = [(t, v) for t, v, r in zip(times, values, w.drift) if r.status == "drift"]
    if hot:
        axes.scatter([t for t, _ in hot], [v for _, v in hot], color=ALARM, s=30, zorder=3, label="drift")
    if w.drift and w.drift[0].method in ("ks", "chisquare", "z"):
        axes.set_yscale("log")  # p-values: alarms are below the line
    axes.legend(fontsize=7)


def _nulls_over_time(axes: Any, w: FeatureWatch) -> None:
    assert w.baseline is not None
    times = [dt.datetime.fromtimestamp(start / 1e6, dt.UTC) for start, _ in w.windows]
    rates = [p.null_rate if p.null_rate is not None else np.nan for p in w.profiles]
    axes.plot(times, rates, color=SERVED, marker=".", label="served")
    axes.axhline(w.baseline.null_rate or 0.0, color=BASELINE, linestyle="--", label="baseline")
    hot = [(t, r) for t, r, n in zip(times, rates, w.nulls) if n.status == "drift"]
    if hot:
        axes.scatter([t for t, _ in hot], [r for _, r in hot], color=ALARM, s=30, zorder=3, label="null burst")
    axes.set_ylabel("null rate", fontsize=7)
    axes.legend(fontsize=7)


def _skew_section(skew: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><td>{html.escape(f['feature'])}</td><td>{f['mismatches']:,}</td><td>{f['compared']:,}</td>"
                   f"<td>{f['mismatch_rate']:.3%}</td><td>{html.escape(', '.join(f'{c} {n}' for c, n in f['causes'].items()))}"
                   "</td></tr>" for f in skew.get("features", []))
    return (f"<h2>Train/serve skew</h2><p>{skew.get('rows', 0):,} logged rows replayed through the offline engine: "
            f"{skew.get('mismatches', 0):,} mismatches.</p><table><tr><th>feature</th><th>mismatches</th>"
            f"<th>compared</th><th>rate</th><th>causes</th></tr>{rows}</table>")


def _views_section(views: Sequence[tuple[str, int | None, float, int, Sequence[Violation]]]) -> str:
    rows = []
    for view, newest, limit, at_us, broken in views:
        age = "no event" if newest is None else f"{(at_us - newest) / 1e6:,.0f} s"
        status = "breach" if broken else "ok"
        rows.append(f"<tr><td>{html.escape(view)}</td><td>{age}</td><td>{limit:,.0f} s</td>"
                    f"<td class='{status}'>{status}</td></tr>")
    return ("<h2>Freshness of feature views</h2><table><tr><th>view</th><th>newest event's age</th>"
            f"<th>expected within</th><th>status</th></tr>{''.join(rows)}</table>")


def _freshness_section(freshness: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for source, stats in freshness.items():
        lag = stats.get("event_to_servable") or {}
        rows.append(f"<tr><td>{html.escape(source)}</td><td>{_num(lag.get('p50_ms'))}</td><td>{_num(lag.get('p99_ms'))}"
                    f"</td><td>{html.escape(str(stats.get('consumer_lag')))}</td></tr>")
    return ("<h2>Freshness</h2><table><tr><th>stream source</th><th>event → servable p50 ms</th><th>p99 ms</th>"
            f"<th>consumer lag</th></tr>{''.join(rows)}</table>")


def _anchor(w: FeatureWatch) -> str:
    return "f-" + "".join(c if c.isalnum() else "-" for c in f"{w.feature}-{w.version}")


def _num(value: object) -> str:
    return "–" if value is None else f"{value:.3g}" if isinstance(value, float) else html.escape(str(value))


def _share(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, float) else html.escape(str(value))


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;font-size:.9em;text-align:left}
.drift,.breach{color:#d62728;font-weight:bold}.ok{color:#2ca02c}.insufficient_data,.no_baseline{color:#7f7f7f}
.meta{color:#666}.plot{display:block;margin:.4em 0}section{border-top:1px solid #ddd;margin-top:1.5em}
small{color:#666;font-weight:normal}.alarms li{margin:.2em 0}"""
