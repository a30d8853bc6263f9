"""Inline SVG drawn by our own code: the overview's bar charts and a flow's graph.
Every text is escaped (task and step names are user data)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

WIDTH = 600
HEIGHT = 160
PAD_LEFT = 48
PAD_BOTTOM = 22


@dataclass(frozen=True)
class Bar:
    label: str  # x axis label (shown for some bars)
    value: float
    title: str  # tooltip


def bar_chart(chart_id: str, bars: Sequence[Bar], unit: str = "") -> Markup:
    """A bar chart with a zero baseline and its maximum marked on the y axis."""
    top = max((b.value for b in bars), default=0.0) or 1.0
    inner_w = WIDTH - PAD_LEFT - 8
    inner_h = HEIGHT - PAD_BOTTOM - 10
    step = inner_w / max(len(bars), 1)
    parts = [
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">',
        f'<line class="axis" x1="{PAD_LEFT}" y1="{10 + inner_h}" x2="{WIDTH - 8}" '
        f'y2="{10 + inner_h}"/>',
        f'<text class="tick" x="{PAD_LEFT - 4}" y="16" text-anchor="end">'
        f"{escape(_short(top))}{escape(unit)}</text>",
        f'<text class="tick" x="{PAD_LEFT - 4}" y="{10 + inner_h}" text-anchor="end">0</text>',
    ]
    label_every = max(1, len(bars) // 6)
    for i, bar in enumerate(bars):
        h = inner_h * bar.value / top
        x = PAD_LEFT + i * step
        parts.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{10 + inner_h - h:.1f}" '
            f'width="{max(step - 2, 1):.1f}" height="{h:.1f}" data-value="{bar.value:g}">'
            f"<title>{escape(bar.title)}</title></rect>"
        )
        if i % label_every == 0:
            parts.append(f'<text class="tick" x="{x + step / 2:.1f}" y="{HEIGHT - 6}" '
                         f'text-anchor="middle">{escape(bar.label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value == int(value):
        return f"{value:g}"
    # Two significant digits below 10 (run times of a few ms must not read 0.0).
    return f"{value:.2g}" if value < 10 else f"{value:.1f}"


NODE_W = 150
NODE_H = 40
GAP_X = 60
GAP_Y = 18


def flow_graph(steps: Sequence[Mapping[str, Any]]) -> Markup:
    """A flow's steps in columns by depth (longest chain of dependencies before
    them), an arrow from each dependency; step state as a CSS class."""
    by_name = {str(s["step"]): s for s in steps}
    depth: dict[str, int] = {}

    def depth_of(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in depth:
            return depth[name]
        deps = [d for d in by_name[name]["depends_on"] or [] if d in by_name and d not in seen]
        d = 1 + max((depth_of(x, seen | {name}) for x in deps), default=-1)
        depth[name] = d
        return d

    columns: dict[int, list[str]] = {}
    for s in sorted(steps, key=lambda s: s["position"]):
        columns.setdefault(depth_of(str(s["step"])), []).append(str(s["step"]))
    pos: dict[str, tuple[float, float]] = {}
    for col, names in columns.items():
        for row, name in enumerate(names):
            pos[name] = (10 + col * (NODE_W + GAP_X), 10 + row * (NODE_H + GAP_Y))
    width = 20 + (max(columns, default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = 20 + max((len(v) for v in columns.values()), default=1) * (NODE_H + GAP_Y) - GAP_Y
    parts = [
        f'<svg id="flow-graph" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/>'
        "</marker></defs>",
    ]
    for name, s in by_name.items():
        x2, y2 = pos[name]
        for dep in s["depends_on"] or []:
            if dep in pos:
                x1, y1 = pos[dep]
                parts.append(
                    f'<line class="edge" x1="{x1 + NODE_W}" y1="{y1 + NODE_H / 2}" x2="{x2}" '
                    f'y2="{y2 + NODE_H / 2}" marker-end="url(#arrow)"/>'
                )
    for name, s in by_name.items():
        x, y = pos[name]
        state = s["state"] or "gone"
        parts.append(
            f'<g class="step state-{escape(state)}" data-job-id="{int(s["job_id"])}" '
            f'data-step="{escape(name)}">'
            f'<a href="../jobs/{int(s["job_id"])}">'
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text x="{x + 8}" y="{y + 16}" class="step-name">{escape(_clip(name, 20))}</text>'
            f'<text x="{x + 8}" y="{y + 32}" class="step-state">{escape(state)} · '
            f"{escape(_clip(str(s['task_identifier'] or ''), 14))}</text>"
            f"<title>{escape(name)}: {escape(state)}</title></a></g>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
