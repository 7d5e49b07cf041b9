// The engagement dashboard: reads the worker's /v1/ API and draws the panels (charts.js).
//
// The API token comes from the URL fragment (#token=...) or the sign-in field and is kept
// in sessionStorage only (this tab, until it closes); it goes out in the Authorization
// header, never in a URL. The fragment is removed from the address bar once read.
"use strict";

(() => {
  const TOKEN_KEY = "engagement-scorer.api-token";
  const REFRESH_MS = 5000;
  const TREND_EVERY = 6; // refreshes between two reloads of the 90-day trend
  const FEED_ROWS = 30;
  const $ = (id) => document.getElementById(id);

  const state = {
    refreshes: 0, timer: null, trend: null, trendMode: "rolling", hiddenTrend: new Set(),
    hiddenDims: new Set(), feedSeen: new Set(), customer: null, timeline: null, tiers: [],
  };

  // ---------------------------------------------------------------- token and API

  function takeTokenFromFragment() {
    const found = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (found) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(found[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
  }

  class Unauthorized extends Error {}

  async function api(path) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const reply = await fetch(path, { headers, cache: "no-store" });
    if (reply.status === 401) throw new Unauthorized("a valid API token is required");
    const body = await reply.json();
    if (!reply.ok) {
      const err = new Error(body.error ? body.error.message : `HTTP ${reply.status}`);
      err.status = reply.status;
      throw err;
    }
    return body;
  }

  function signedOut(message) {
    $("signin").hidden = false;
    $("signout").hidden = true;
    status(message, "error");
  }

  function status(text, kind) {
    const node = $("status");
    node.textContent = text;
    node.className = `status ${kind || ""}`;
  }

  // ---------------------------------------------------------------- helpers

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "dataset") Object.assign(node.dataset, v);
      else if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  const fixed = (v, n = 2) => Number(v).toFixed(n);
  const when = (iso) => (iso ? iso.replace("T", " ").slice(0, 19) : "-");
  const shortWhen = (iso) => when(iso).slice(5);

  function tierChip(name) {
    const i = state.tiers.indexOf(name);
    const chip = h("span", { class: "chip" }, name);
    chip.style.background = Charts.tierColour(Math.max(i, 0), state.tiers.length || 1);
    return chip;
  }

  function npsClass(v) {
    if (v === null) return "";
    return v >= 30 ? "good" : v >= 0 ? "fair" : "bad";
  }

  function inFuture(iso) {
    if (!iso) return "none due";
    const ms = Date.parse(iso) - Date.now();
    if (ms <= 0) return "due now";
    const hours = ms / 3600000;
    return hours < 48 ? `in ${fixed(hours, 1)} h` : `in ${fixed(hours / 24, 1)} d`;
  }

  // ---------------------------------------------------------------- panels

  function drawTiers(body) {
    state.tiers = body.tiers.map((t) => t.name);
    $("model").textContent = `model ${body.model}`;
    const total = body.tiers.reduce((s, t) => s + t.customers, 0);
    $("total").textContent = `${total} customers`;
    Charts.thermometer($("thermometer"), body.tiers);
  }

  function drawNps(body) {
    const o = body.overall;
    const value = $("nps-value");
    value.textContent = o.nps === null ? "-" : String(o.nps);
    value.className = npsClass(o.nps);
    const parts = [["promoters", "#1a9b5b"], ["passives", "#c9ced8"], ["detractors", "#d6453d"]];
    const bar = h("div", { class: "split" });
    const legend = h("div", { class: "split-legend" });
    for (const [key, colour] of parts) {
      const seg = h("div", { title: `${key}: ${o[key]}` });
      seg.style.width = `${o.responses ? (100 * o[key]) / o.responses : 0}%`;
      seg.style.background = colour;
      bar.append(seg);
      const sw = h("span", { class: "swatch" });
      sw.style.background = colour;
      legend.append(h("span", { "data-testid": `nps-${key}` }, sw, `${key} `, h("b", {}, String(o[key]))));
    }
    $("nps-split").replaceWith(Object.assign(bar, { id: "nps-split" }));
    const old = document.querySelector(".nps .split-legend");
    if (old) old.remove();
    $("nps-split").after(legend);
    $("nps-window").textContent = `last 30 days, ${body.from} to ${body.to}`;
    $("nps-responses").textContent = `${o.responses} responses`;
  }

  function drawSegments(body) {
    const most = Math.max(1, ...body.segments.map((s) => s.customers));
    const rows = body.segments.map((s) => {
      const fill = h("div", { class: "fill" });
      fill.style.width = `${(100 * s.customers) / most}%`;
      return h("div", { class: "row" },
        h("div", { class: "label" }, s.name.replaceAll("_", " "),
          h("b", { "data-testid": "segment-count", "data-segment": s.name }, String(s.customers))),
        h("div", { class: "track" }, fill));
    });
    $("segments").replaceChildren(...rows);
  }

  function rolling(days, k) {
    return days.map((_, i) => {
      let p = 0, pa = 0, d = 0;
      for (let j = Math.max(0, i - k + 1); j <= i; j++) {
        p += days[j].promoters; pa += days[j].passives; d += days[j].detractors;
      }
      const n = p + pa + d;
      return n ? Math.round((100 * (p - d)) / n) : null;
    });
  }

  function drawTrend() {
    const body = state.trend;
    if (!body) return;
    const pick = (days) => (state.trendMode === "rolling" ? rolling(days, 7) : days.map((d) => d.nps));
    const tiers = Object.keys(body.by_tier || {});
    const series = tiers.map((name, i) => ({
      name, colour: Charts.tierColour(i, tiers.length), width: 1.8,
      values: pick(body.by_tier[name]), hidden: state.hiddenTrend.has(name),
    }));
    series.push({ name: "all customers", colour: "#1f2430", width: 2.8,
      values: pick(body.days), daily: body.days.map((d) => d.nps),
      hidden: state.hiddenTrend.has("all customers") });
    Charts.npsTrend($("nps-trend"), body.days.map((d) => d.day), series,
      body.days.map((d) => d.responses));
    const buttons = series.slice().reverse().map((s) => {
      const sw = h("span", { class: "swatch" });
      sw.style.background = s.colour;
      const b = h("button", { type: "button", class: s.hidden ? "off" : "" }, sw, s.name);
      b.addEventListener("click", () => {
        if (state.hiddenTrend.has(s.name)) state.hiddenTrend.delete(s.name);
        else state.hiddenTrend.add(s.name);
        drawTrend();
      });
      return b;
    });
    buttons.push(h("span", { class: "muted" }, "dots: NPS of each day (all customers); bars: responses"));
    $("trend-legend").replaceChildren(...buttons);
    for (const b of $("trend-mode").querySelectorAll("button")) {
      b.classList.toggle("on", b.dataset.mode === state.trendMode);
    }
    $("trend-window").textContent = `${body.from} to ${body.to}, UTC days`;
  }

  function drawFeed(body) {
    const following = state.feedSeen.size > 0; // (the first fill is not news)
    const rows = body.changes.slice(0, FEED_ROWS).map((c) => {
      const link = h("button", { type: "button", class: "customer-link" }, c.customer_id);
      link.addEventListener("click", () => lookup(c.customer_id));
      const change = c.kind === "tier"
        ? h("span", {}, tierChip(c.from), " \u2192 ", tierChip(c.to))
        : h("span", {}, c.type.endsWith("entered") ? "entered " : "left ",
          h("span", { class: "chip segment" }, c.segment));
      const row = h("tr", { "data-change": c.id }, h("td", {}, shortWhen(c.time)), h("td", {}, link),
        h("td", {}, change), h("td", { class: "num" }, fixed(c.score)),
        h("td", { class: `cause-${c.cause}` }, c.cause));
      if (following && !state.feedSeen.has(c.id)) row.className = "fresh";
      return row;
    });
    body.changes.forEach((c) => state.feedSeen.add(c.id));
    $("feed").replaceChildren(...rows);
    $("feed-empty").hidden = rows.length > 0;
  }

  function drawCustomer() {
    const c = state.customer;
    const box = $("customer");
    if (c.error) {
      box.replaceChildren(h("div", { class: "error" }, c.error));
      $("customer-chart").replaceChildren();
      $("customer-legend").replaceChildren();
      $("customer-events-table").hidden = true;
      return;
    }
    const cell = (k, v, testid) => [h("div", {}, h("div", { class: "k" }, k),
      h("div", { class: "v", "data-testid": testid }, v))];
    const segs = c.segments.length
      ? h("span", {}, ...c.segments.map((s) => h("span", { class: "chip segment" }, s))) : "none";
    box.replaceChildren(
      ...cell("customer", c.customer_id, "customer-id"),
      ...cell("score now", fixed(c.score), "customer-score"),
      ...cell("tier", tierChip(c.tier), "customer-tier"),
      ...cell("next crossing", h("span", { title: when(c.next_crossing) }, inFuture(c.next_crossing)),
        "customer-next-crossing"),
      ...cell("segments", segs, "customer-segments"),
      ...cell("NPS answer", c.nps.last_score === null ? "-" : `${c.nps.last_score} (${c.nps.category})`, "customer-nps"),
      ...cell("last event", when(c.last_event_at), "customer-last-event"),
      ...cell("events applied", String(c.events_applied), "customer-events-applied"),
    );
    const tl = state.timeline;
    Charts.customer($("customer-chart"), tl, state.hiddenDims, Date.now());
    const dims = Object.keys(tl.series.dimensions);
    const legend = [h("span", {}, h("span", { class: "swatch" }), "score")];
    legend[0].firstChild.style.background = "#1f2430";
    dims.forEach((d, i) => {
      const sw = h("span", { class: "swatch" });
      sw.style.background = Charts.dimColour(i);
      const b = h("button", { type: "button", class: state.hiddenDims.has(d) ? "off" : "" }, sw, d);
      b.addEventListener("click", () => {
        if (state.hiddenDims.has(d)) state.hiddenDims.delete(d); else state.hiddenDims.add(d);
        drawCustomer();
      });
      legend.push(b);
    });
    legend.push(h("span", { class: "muted" }, tl.complete ? "every event shown"
      : `exact from ${when(tl.from)} (older events are summed, not listed)`));
    $("customer-legend").replaceChildren(...legend);
    const events = tl.events.slice().reverse().map((e) => h("tr", {},
      h("td", {}, when(e.timestamp)), h("td", {}, e.type), h("td", {}, e.dimension),
      h("td", { class: "num" }, (e.points > 0 ? "+" : "") + e.points)));
    $("customer-events").replaceChildren(...events);
    $("customer-events-table").hidden = events.length === 0;
  }

  // ---------------------------------------------------------------- loading

  async function lookup(id) {
    id = (id || "").trim();
    if (!id) return;
    $("customer-input").value = id;
    const path = `/v1/customers/${encodeURIComponent(id)}`;
    try {
      const [customer, timeline] = await Promise.all([api(path), api(`${path}/timeline`)]);
      state.customer = customer;
      state.timeline = timeline;
    } catch (err) {
      if (err instanceof Unauthorized) return signedOut(err.message);
      state.customer = { error: err.message };
    }
    drawCustomer();
  }

  async function refresh(options) {
    const withTrend = (options && options.trend) || state.trend === null
      || state.refreshes % TREND_EVERY === 0;
    try {
      const [tiers, nps, segments, changes, trend] = await Promise.all([
        api("/v1/tiers"), api("/v1/nps"), api("/v1/segments"), api("/v1/changes?limit=50"),
        withTrend ? api("/v1/nps/daily?by=tier") : Promise.resolve(null),
      ]);
      drawTiers(tiers);
      drawNps(nps);
      drawSegments(segments);
      drawFeed(changes);
      if (trend) {
        state.trend = trend;
        drawTrend();
      }
      if (state.customer && !state.customer.error) await lookup(state.customer.customer_id);
      state.refreshes += 1;
      document.body.dataset.refreshes = String(state.refreshes);
      $("signin").hidden = true;
      $("signout").hidden = !sessionStorage.getItem(TOKEN_KEY);
      status(`live, every ${REFRESH_MS / 1000} s`, "live");
      $("updated").textContent = `updated ${new Date().toISOString().slice(0, 19).replace("T", " ")} UTC`;
    } catch (err) {
      if (err instanceof Unauthorized) signedOut(err.message);
      else status(`error: ${err.message}`, "error");
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    state.timer = setTimeout(async () => { await refresh(); schedule(); }, REFRESH_MS);
  }

  function start() {
    takeTokenFromFragment();
    $("signin").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
      $("token-input").value = "";
      refresh({ trend: true });
    });
    $("signout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      signedOut("signed out");
    });
    $("lookup").addEventListener("submit", (ev) => {
      ev.preventDefault();
      lookup($("customer-input").value);
    });
    for (const b of $("trend-mode").querySelectorAll("button")) {
      b.addEventListener("click", () => {
        state.trendMode = b.dataset.mode;
        drawTrend();
      });
    }
    // for tests and the curious: dashboard.refresh() resolves once every panel is redrawn
    window.dashboard = { refresh: () => refresh({ trend: true }), lookup };
    refresh({ trend: true }).then(schedule);
  }

  start();
})();
