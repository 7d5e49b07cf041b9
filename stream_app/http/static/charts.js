// SVG charts of the engagement dashboard: the tier thermometer, the NPS trend and a
// customer's score over time. Plain DOM, no library; each function redraws its container.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const TIER_COLOURS = ["#3b7dd8", "#e6a23c", "#e0463e"];
  const DIM_COLOURS = ["#2f6fdd", "#e07b39", "#1a9b5b", "#9b59b6", "#c0392b", "#16a0a8",
    "#7f8c2d", "#d35490"];
  const DAY_MS = 86400000;

  function el(tag, attrs, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function title(text) { return el("title", {}, text); }

  function mount(container, svg) {
    container.replaceChildren(svg);
    return svg;
  }

  // Tier i of n (coldest first): blue to red.
  function tierColour(i, n) {
    const palette = n === 1 ? ["#3b7dd8"] : n === 2 ? ["#3b7dd8", "#e0463e"]
      : n === 3 ? TIER_COLOURS : ["#3b7dd8", "#16a0a8", "#e6a23c", "#e07b39", "#e0463e"];
    return palette[i % palette.length];
  }

  function dimColour(i) { return DIM_COLOURS[i % DIM_COLOURS.length]; }

  // ---------------------------------------------------------------- thermometer

  // tiers: [{name, customers, entered_last_hour, ...}] coldest first.
  function thermometer(container, tiers) {
    const W = 300, H = 600, tubeX = 34, tubeW = 34, top = 18, bottom = 510, bulbR = 30;
    const total = tiers.reduce((s, t) => s + t.customers, 0);
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": "customers per tier" });
    const inner = bottom - top;
    svg.append(el("rect", { x: tubeX, y: top - 6, width: tubeW, height: inner + 12, rx: tubeW / 2,
      fill: "#eef0f4", stroke: "#c9ced8", "stroke-width": 2 }));
    svg.append(el("circle", { cx: tubeX + tubeW / 2, cy: bottom + bulbR - 4, r: bulbR,
      fill: "#eef0f4", stroke: "#c9ced8", "stroke-width": 2 }));
    let y = bottom;
    tiers.forEach((t, i) => {
      const h = total ? inner * t.customers / total : 0;
      const colour = tierColour(i, tiers.length);
      if (h > 0) {
        svg.append(el("rect", { x: tubeX + 5, y: y - h, width: tubeW - 10, height: h,
          fill: colour }, title(`${t.name}: ${t.customers}`)));
      }
      y -= h;
    });
    svg.append(el("circle", { cx: tubeX + tubeW / 2, cy: bottom + bulbR - 4, r: bulbR - 6,
      fill: tierColour(0, tiers.length) }));
    // ticks: every 25 % of the customers
    for (let q = 0; q <= 4; q++) {
      const ty = bottom - inner * q / 4;
      svg.append(el("line", { x1: tubeX + tubeW + 3, x2: tubeX + tubeW + 10, y1: ty, y2: ty,
        stroke: "#9aa1ad" }));
    }
    // one label block per tier, hottest on top, evenly spaced
    const rows = tiers.slice().reverse();
    const slot = (bottom - top) / rows.length;
    rows.forEach((t, k) => {
      const i = tiers.length - 1 - k;
      const by = top + slot * k + 22;
      const x = 98;
      const share = total ? Math.round(100 * t.customers / total) : 0;
      svg.append(el("rect", { x, y: by - 12, width: 10, height: 10, rx: 2,
        fill: tierColour(i, tiers.length) }));
      svg.append(el("text", { x: x + 16, y: by - 2, class: "name" }, t.name));
      const count = el("text", { x, y: by + 28, class: "count", "data-testid": "tier-count",
        "data-tier": t.name }, String(t.customers));
      svg.append(count);
      svg.append(el("text", { x: x + 17 * String(t.customers).length + 10, y: by + 27,
        class: "share" }, `${share} %`));
      svg.append(el("text", { x, y: by + 46, class: "moves", "data-tier": t.name },
        `last hour  +${t.entered_last_hour} in  \u2212${t.left_last_hour} out`));
      svg.append(el("text", { x, y: by + 62, class: "moves", "data-tier": t.name },
        `last day   +${t.entered_last_day} in  \u2212${t.left_last_day} out`));
    });
    return mount(container, svg);
  }

  // ---------------------------------------------------------------- line charts

  function scale(d0, d1, r0, r1) {
    const span = d1 - d0 || 1;
    return (v) => r0 + (v - d0) * (r1 - r0) / span;
  }

  // A path through points [x, y]; y null breaks the line.
  function linePath(points) {
    let d = "", pen = false;
    for (const [x, y] of points) {
      if (y === null || y === undefined || !isFinite(y)) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
      pen = true;
    }
    return d;
  }

  function utcDay(ms) { return new Date(ms).toISOString().slice(0, 10); }
  function shortDay(ms) {
    const d = new Date(ms);
    return d.toLocaleDateString("en-GB", { day: "numeric", month: "short", timeZone: "UTC" });
  }

  // series: [{name, colour, width, values: [nps or null per day], hidden}], days: ["YYYY-MM-DD"]
  function npsTrend(container, days, series, responses) {
    const W = 920, H = 300, L = 40, R = 24, T = 12, B = 62, barH = 34;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "NPS per day" });
    const x = scale(0, Math.max(days.length - 1, 1), L, W - R);
    const y = scale(-100, 100, H - B, T);
    for (const v of [-100, -50, 0, 50, 100]) {
      svg.append(el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v),
        class: v === 0 ? "grid zero" : "grid" }));
      svg.append(el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" },
        String(v)));
    }
    const step = Math.max(1, Math.ceil(days.length / 9));
    days.forEach((day, i) => {
      if (i % step === 0 || i === days.length - 1) {
        const ms = Date.parse(day + "T00:00:00Z");
        svg.append(el("text", { x: x(i), y: H - 4, class: "axis",
          "text-anchor": i === days.length - 1 ? "end" : "middle" }, shortDay(ms)));
      }
    });
    // responses per day, as bars under the chart
    const most = Math.max(1, ...responses);
    const barY = H - B + 10;
    const bw = Math.max(1, (W - L - R) / Math.max(days.length, 1) - 1);
    responses.forEach((n, i) => {
      if (!n) return;
      const h = barH * n / most;
      svg.append(el("rect", { x: x(i) - bw / 2, y: barY + barH - h, width: bw, height: h,
        fill: "#cfd6e2" }, title(`${days[i]}: ${n} responses`)));
    });
    svg.append(el("text", { x: L - 6, y: barY + barH, "text-anchor": "end", class: "axis" },
      "n"));
    for (const s of series) {
      if (s.hidden) continue;
      const pts = s.values.map((v, i) => [x(i), v === null ? null : y(v)]);
      svg.append(el("path", { d: linePath(pts), fill: "none", stroke: s.colour,
        "stroke-width": s.width, "stroke-linejoin": "round", "stroke-opacity": 0.9 }));
      (s.daily || []).forEach((v, i) => {
        if (v === null) return;
        svg.append(el("circle", { cx: x(i), cy: y(v), r: 2.8, fill: s.colour,
          "fill-opacity": 0.45 }, title(`${days[i]}: NPS ${v} (${responses[i]} responses)`)));
      });
    }
    return mount(container, svg);
  }

  // A customer's timeline (GET /v1/customers/{id}/timeline), dimensions toggled by `hidden`.
  function customer(container, tl, hidden, nowMs) {
    const W = 920, H = 300, L = 44, R = 70, T = 12, B = 34;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": "score and dimensions over time" });
    const ts = tl.series.t_ms;
    const dims = Object.keys(tl.series.dimensions);
    const shown = dims.filter((d) => !hidden.has(d));
    let lo = 0, hi = 1;
    for (const v of tl.series.score) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    for (const d of shown) {
      for (const v of tl.series.dimensions[d]) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    for (const t of tl.tiers) if (t.threshold > 0 && t.threshold < hi * 1.6) hi = Math.max(hi, t.threshold);
    hi *= 1.08;
    const t0 = ts[0], t1 = ts[ts.length - 1];
    const x = scale(t0, t1, L, W - R);
    const y = scale(lo, hi, H - B, T);
    const ticks = niceTicks(lo, hi, 5);
    for (const v of ticks) {
      svg.append(el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v),
        class: v === 0 ? "grid zero" : "grid" }));
      svg.append(el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" },
        String(Math.round(v * 100) / 100)));
    }
    const span = t1 - t0;
    for (let k = 0; k <= 6; k++) {
      const t = t0 + span * k / 6;
      svg.append(el("text", { x: x(t), y: H - 8, "text-anchor": "middle", class: "axis" },
        span > 3 * DAY_MS ? shortDay(t)
          : new Date(t).toISOString().slice(11, span > 3600000 ? 16 : 19)));
    }
    tl.tiers.forEach((t, i) => {
      if (t.threshold <= 0 || t.threshold > hi) return;
      const colour = tierColour(i, tl.tiers.length);
      svg.append(el("line", { x1: L, x2: W - R, y1: y(t.threshold), y2: y(t.threshold),
        stroke: colour, class: "threshold" }));
      svg.append(el("text", { x: W - R + 4, y: y(t.threshold) + 4, fill: colour,
        class: "threshold-label" }, `${t.name} ${t.threshold}`));
    });
    dims.forEach((d, i) => {
      if (hidden.has(d)) return;
      const pts = ts.map((t, k) => [x(t), y(tl.series.dimensions[d][k])]);
      svg.append(el("path", { d: linePath(pts), fill: "none", stroke: dimColour(i),
        "stroke-width": 1.4, "stroke-opacity": 0.9 }, title(d)));
    });
    const pts = ts.map((t, k) => [x(t), y(tl.series.score[k])]);
    svg.append(el("path", { d: linePath(pts), fill: "none", stroke: "#1f2430",
      "stroke-width": 2.6, "stroke-linejoin": "round" }, title("score")));
    for (const e of tl.events) {
      const ex = x(e.timestamp_ms);
      svg.append(el("line", { x1: ex, x2: ex, y1: H - B, y2: H - B + 7,
        stroke: e.points < 0 ? "#d6453d" : "#1f2430", "stroke-width": 1.5 },
        title(`${e.timestamp} ${e.type} ${e.points > 0 ? "+" : ""}${e.points} (${e.dimension})`)));
    }
    if (nowMs >= t0 && nowMs <= t1) {
      svg.append(el("line", { x1: x(nowMs), x2: x(nowMs), y1: T, y2: H - B, class: "now" }));
    }
    return mount(container, svg);
  }

  function niceTicks(lo, hi, n) {
    const raw = (hi - lo) / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(v);
    return out;
  }

  return { thermometer, npsTrend, customer, tierColour, dimColour, utcDay };
})();
