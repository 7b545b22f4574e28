/* Common Ground reporting dashboard: a static shell that fetches disclosure-controlled
 * JSON from /v1/reports/* with the caller's key and draws inline SVG charts.
 * No third-party code; the key lives in sessionStorage (this tab only). */
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const KEY_STORE = "cg-reporting-key";
  const $ = (id) => document.getElementById(id);
  let meta = null;

  // ---------- key handling ----------------------------------------------------------
  function takeKeyFromFragment() {
    const m = /(?:^#|&)key=([^&]+)/.exec(window.location.hash || "");
    if (m) {
      sessionStorage.setItem(KEY_STORE, decodeURIComponent(m[1]));
      history.replaceState(null, "", window.location.pathname + window.location.search);
    }
  }
  const key = () => sessionStorage.getItem(KEY_STORE);

  function showSignIn(message) {
    $("dash").hidden = true;
    $("who").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = message || "";
  }

  async function api(path, params) {
    const qs = new URLSearchParams();
    Object.entries(params || {}).forEach(([k, v]) => { if (v) qs.set(k, v); });
    const url = path + (qs.toString() ? "?" + qs : "");
    const res = await fetch(url, { headers: { Authorization: "Bearer " + key() } });
    if (res.status === 401) {
      sessionStorage.removeItem(KEY_STORE);
      throw new AuthError("That key was not accepted.");
    }
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(detail);
    }
    return res;
  }
  class AuthError extends Error {}

  // ---------- helpers ----------------------------------------------------------------
  const num = (v) => (typeof v === "number" ? v : 0);
  const shown = (v) => (v === null || v === undefined ? "–" : String(v));
  const pct = (r) => (r === null || r === undefined ? "withheld" : (r * 100).toFixed(1) + "%");
  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, String(v)));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function niceMax(v) {
    if (v <= 5) return 5;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  function tickCount(max) {
    for (const n of [5, 4, 2]) if (Number.isInteger(max / n) || max <= 1) return n;
    return 4;
  }
  function legend(id, series) {
    const box = $(id);
    box.replaceChildren(...series.map((s, i) => el("span", { class: "s" + (i + 1) }, s.name)));
  }
  function empty(container, text) {
    container.replaceChildren(el("div", { class: "empty" }, text));
  }

  // ---------- charts -----------------------------------------------------------------
  /** Horizontal grouped bars. rows: [{label, values: [...]}]; values may be a small-count marker such as "<10". */
  function hbars(container, rows, series, opts) {
    opts = opts || {};
    const fmt = opts.format || shown;
    const bar = opts.bar || 11, gap = 3, pad = 10;
    const labelW = opts.labelWidth || 170, valueW = 58;
    const width = Math.max(360, Math.round(container.clientWidth || 640));
    const groupH = series.length * (bar + gap) + pad;
    const height = rows.length * groupH + 26;
    const max = opts.max || niceMax(Math.max(1, ...rows.flatMap((r) => r.values.map(num))));
    const plotW = width - labelW - valueW;
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": opts.title || "bar chart" });
    const steps = tickCount(max);
    for (let t = 0; t <= steps; t++) {
      const x = labelW + (plotW * t) / steps;
      root.appendChild(svg("line", { x1: x, x2: x, y1: 0, y2: height - 20, class: "axis" }));
      const v = (max * t) / steps;
      const tick = opts.percent ? Math.round(v * 100) + "%" : String(v);
      root.appendChild(svg("text", { x, y: height - 6, "text-anchor": "middle", class: "muted" }, tick));
    }
    rows.forEach((row, i) => {
      const y0 = i * groupH + pad / 2;
      root.appendChild(svg("text", { x: labelW - 8, y: y0 + (series.length * (bar + gap)) / 2 + 4,
        "text-anchor": "end" }, row.label));
      row.values.forEach((v, j) => {
        const y = y0 + j * (bar + gap);
        const w = (plotW * Math.min(num(v), max)) / max;
        if (typeof v === "number" && v > 0) {
          root.appendChild(svg("rect", { x: labelW, y, width: Math.max(w, 1.5), height: bar,
            rx: 2, class: "f" + (j + 1) }));
        }
        const suppressed = typeof v === "string" || v === null;
        root.appendChild(svg("text", { x: labelW + w + 5, y: y + bar - 2,
          class: suppressed ? "sup" : "" }, fmt(v)));
      });
    });
    container.replaceChildren(root);
  }

  /** Vertical grouped bars by month. */
  function vbars(container, rows, series) {
    if (!rows.length) return empty(container, "No enrolments in this period.");
    const width = Math.max(360, Math.round(container.clientWidth || 640));
    const height = 260, left = 40, bottom = 44, top = 16;
    const plotW = width - left - 10, plotH = height - top - bottom;
    const max = niceMax(Math.max(1, ...rows.flatMap((r) => r.values.map(num))));
    const slot = plotW / rows.length;
    const bar = Math.max(3, Math.min(22, (slot - 6) / series.length));
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "by month" });
    const steps = tickCount(max);
    for (let t = 0; t <= steps; t++) {
      const y = top + plotH - (plotH * t) / steps;
      root.appendChild(svg("line", { x1: left, x2: width - 10, y1: y, y2: y, class: "axis" }));
      root.appendChild(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "muted" },
        String((max * t) / steps)));
    }
    const every = Math.ceil(rows.length / Math.max(1, Math.floor(plotW / 38)));
    rows.forEach((row, i) => {
      const x0 = left + i * slot + (slot - bar * series.length) / 2;
      row.values.forEach((v, j) => {
        const h = (plotH * num(v)) / max;
        const x = x0 + j * bar;
        if (num(v) > 0) {
          root.appendChild(svg("rect", { x, y: top + plotH - h, width: bar - 1, height: h, rx: 2,
            class: "f" + (j + 1) }));
        }
        if (typeof v === "string") {
          root.appendChild(svg("text", { x: x + bar / 2, y: top + plotH - 4, "text-anchor": "middle",
            class: "sup" }, v));
        }
      });
      if (i % every === 0) {
        const [year, month] = row.label.split("-");
        const cx = left + i * slot + slot / 2;
        root.appendChild(svg("text", { x: cx, y: height - bottom + 16, "text-anchor": "middle",
          class: "muted" }, MONTHS[Number(month) - 1] || row.label));
        if (i === 0 || month === "01") {
          root.appendChild(svg("text", { x: cx, y: height - bottom + 31, "text-anchor": "middle",
            class: "muted" }, year));
        }
      }
    });
    container.replaceChildren(root);
  }

  // ---------- rendering ----------------------------------------------------------------
  function kpi(label, value, extra, accent) {
    const box = el("div", { class: "kpi" + (accent ? " accent" : "") });
    box.append(el("div", { class: "label" }, label), el("div", { class: "value" }, shown(value)));
    if (extra) box.append(el("div", { class: "extra" }, extra));
    return box;
  }

  function renderKpis(s) {
    const e = s.enrolments, m = s.matching, esol = s.esol.all;
    const wait = m.median_wait_days === null ? "withheld (too few matches to publish)" : "days from opting in to a match";
    $("kpis").replaceChildren(
      kpi("Started", e.started, "enrolments"),
      kpi("Stayed", e.stayed, "retention " + pct(e.retention_rate)),
      kpi("Completed", e.completed, "completion rate " + pct(e.completion_rate), true),
      kpi("Achieved", e.achieved, "achievement rate " + pct(e.achievement_rate), true),
      kpi("ESOL progressed", esol.esol_progressed, "of " + shown(esol.esol_assessed) + " assessed · " + pct(esol.progression_rate)),
      kpi("Matches confirmed", m.confirmed, "cross-background " + pct(m.cross_background_share)),
      kpi("Median wait", m.median_wait_days === null ? "–" : m.median_wait_days, wait),
      kpi("Waiting for a match", s.waiting_list.waiting, "opted in, not yet matched"),
    );
  }

  function renderLa(table) {
    const series = [{ name: "Started" }, { name: "Completed" }, { name: "Achieved" }];
    legend("legend-la", series);
    hbars($("chart-la"), table.rows.map((r) => ({
      label: r.label, values: [r.values.started, r.values.completed, r.values.achieved],
    })), series, { title: "Outcomes by local authority", labelWidth: 200, bar: 8 });

    const reach = [{ name: "Matches confirmed" }, { name: "Waiting" }];
    legend("legend-reach", reach);
    hbars($("chart-reach"), table.rows.map((r) => ({
      label: r.label, values: [r.values.matches_confirmed, r.values.waiting],
    })), reach, { title: "Befriending reach", bar: 8 });

    const cols = ["started", "completed", "achieved", "matches_confirmed", "cross_background", "waiting"];
    const labels = Object.fromEntries(table.columns.map((c) => [c.key, c.label]));
    const head = el("tr");
    head.append(el("th", {}, "Local authority"), ...cols.map((c) => el("th", {}, labels[c])),
      el("th", {}, "Completion rate"), el("th", {}, "Cross-background share"));
    const body = [...table.rows, table.total].map((r) => {
      const tr = el("tr", r === table.total ? { class: "total" } : {});
      tr.append(el("td", {}, r.label), ...cols.map((c) => el("td", {}, shown(r.values[c]))),
        el("td", {}, pct(r.rates.completion_rate)), el("td", {}, pct(r.rates.cross_background_share)));
      return tr;
    });
    const thead = el("thead"); thead.append(head);
    const tbody = el("tbody"); tbody.append(...body);
    $("table-la").replaceChildren(thead, tbody);
  }

  function renderMonths(table) {
    const series = [{ name: "Started" }, { name: "Completed" }, { name: "Matches confirmed" }];
    legend("legend-month", series);
    vbars($("chart-month"), table.rows.map((r) => ({
      label: r.label, values: [r.values.started, r.values.completed, r.values.matches_confirmed],
    })), series);
  }

  function renderEsol(s) {
    const series = [{ name: "Matched" }, { name: "Not matched" }];
    legend("legend-esol", series);
    const rate = (k) => [s.esol.matched[k], s.esol.unmatched[k]];
    hbars($("chart-esol"), [
      { label: "Completion rate", values: rate("completion_rate") },
      { label: "Achievement rate", values: rate("achievement_rate") },
      { label: "Progression rate", values: rate("progression_rate") },
    ], series, { max: 1, percent: true, format: pct, title: "ESOL matched vs unmatched", labelWidth: 130 });
  }

  function renderReasons(s) {
    const rows = s.withdrawal_reasons.filter((r) => r.count !== 0)
      .map((r) => ({ label: r.reason, values: [r.count] }));
    if (!rows.length) return empty($("chart-reasons"), "No withdrawals in this selection.");
    hbars($("chart-reasons"), rows, [{ name: "Withdrawn" }], { title: "Withdrawal reasons", labelWidth: 210 });
  }

  // ---------- integration outcomes (issue 16) --------------------------------------------
  /** The integration reports take the area and month filters only. */
  function areaFilters() {
    const f = filters();
    return { combined_authority: f.combined_authority, local_authority: f.local_authority, from: f.from, to: f.to };
  }
  const STATUS_TEXT = { withheld: "withheld", not_yet_observable: "not yet" };
  function indicatorCell(kind, v) {
    if (v.status === "not_yet_observable") return el("td", { class: "later" }, STATUS_TEXT[v.status]);
    if (kind === "count") return el("td", {}, shown(v.value));
    if (v.value === null || v.value === undefined) return el("td", { class: "withheld" }, "withheld");
    return el("td", {}, kind === "rate" ? (v.value * 100).toFixed(1) + "%" : v.value + " d");
  }

  /** Quarters with at least one published number (not a small-count marker). */
  function quartersWithFigures(report) {
    const rows = [...report.rows, ...report.totals];
    return report.quarters.map((q) => q.quarter).filter((q) => rows.some((r) => r.quarter === q &&
      Object.values(r.values).some((v) => v.status === "published" && typeof v.value === "number")));
  }

  function fillQuarters(report) {
    const box = $("f-quarter");
    const current = box.value;
    const codes = report.quarters.map((q) => q.quarter);
    box.replaceChildren(...report.quarters.map((q) => option(q.quarter, q.label)));
    const busy = quartersWithFigures(report);
    const fallback = busy.length ? busy[busy.length - 1] : (codes[codes.length - 1] || "");
    box.value = codes.includes(current) ? current : fallback;
  }

  function renderIndicators() {
    const report = integration && integration.indicators;
    if (!report) return;
    const quarter = $("f-quarter").value;
    const table = $("table-indicators");
    if (!quarter) {
      table.replaceChildren(el("caption", {}, "No activity in this period."));
    } else {
      const inds = report.indicators;
      const domains = [];
      inds.forEach((i) => {
        const last = domains[domains.length - 1];
        if (last && last.key === i.domain) last.span += 1;
        else domains.push({ key: i.domain, label: i.domain_label, span: 1 });
      });
      const top = el("tr");
      top.append(el("th", {}, ""), ...domains.map((d) => el("th", { colspan: d.span, class: "domain" }, d.label)));
      const names = el("tr");
      names.append(el("th", {}, "Local authority"), ...inds.map((i) =>
        el("th", { title: i.definition + " Source events: " + i.source_events.join(", ") + "." }, i.name)));
      const rows = [...report.rows, ...report.totals].filter((r) => r.quarter === quarter).map((r) => {
        const tr = el("tr", r.local_authority === "total" ? { class: "total", "data-la": "total" } : { "data-la": r.local_authority });
        tr.append(el("td", {}, r.label), ...inds.map((i) => {
          const td = indicatorCell(i.kind, r.values[i.key]);
          td.setAttribute("data-indicator", i.key);
          return td;
        }));
        return tr;
      });
      const thead = el("thead"); thead.append(top, names);
      const tbody = el("tbody"); tbody.append(...rows);
      table.replaceChildren(thead, tbody);
    }
    $("unmeasured").replaceChildren(...report.unmeasured_domains.map((d) => {
      const li = el("li", { "data-domain": d.domain });
      li.append(el("b", {}, d.label + ": "), document.createTextNode(d.reason +
        (d.data_needed.length ? " Needed: " + d.data_needed.join("; ") + "." : "")));
      return li;
    }));
  }

  function simpleTable(id, headers, rows) {
    const head = el("tr");
    head.append(...headers.map((h) => el("th", {}, h)));
    const thead = el("thead"); thead.append(head);
    const tbody = el("tbody");
    tbody.append(...rows.map((r) => {
      const tr = el("tr", r.total ? { class: "total" } : {});
      tr.append(...r.cells.map((c) => el("td", {}, c)));
      return tr;
    }));
    $(id).replaceChildren(thead, tbody);
  }

  function renderWaiting(report) {
    const row = (r, total) => ({ total, cells: [r.label, shown(r.opted_in), shown(r.waiting), shown(r.matched),
      pct(r.unmatched_rate), r.median_wait_days === null ? "withheld" : String(r.median_wait_days)] });
    simpleTable("table-waiting", ["Group", "Opted in", "Waiting", "Matched", "Unmatched rate", "Median wait (days)"],
      [...report.rows.map((r) => row(r, false)), row(report.total, true)]);
  }

  function renderBridges(report) {
    const share = (r, mark) => (r["observable_" + mark] ? pct(r["share_active_" + mark]) : "not yet");
    simpleTable("table-bridges", ["Month confirmed", "Matches", "Cross-background", "Active at 6 weeks", "Active at 6 months"],
      report.totals.map((r) => ({ cells: [r.month, shown(r.confirmed), shown(r.cross_background), share(r, "6w"), share(r, "6m")] })));
  }

  function renderComparison(report) {
    const ci = (lo, hi) => (lo === null || lo === undefined ? "–" : (lo * 100).toFixed(1) + "% to " + (hi * 100).toFixed(1) + "%");
    const rows = [];
    report.outcomes.forEach((o) => {
      const name = o.outcome === "retention" ? "Retention" : "Achievement";
      [["matched", "With a cross-background match"], ["unmatched", "Without a match"]].forEach(([k, label]) => {
        const g = o[k];
        rows.push({ cells: [name, label, shown(g.n), shown(g.x), pct(g.rate), ci(g.ci_low, g.ci_high)] });
      });
      const d = o.stratified_difference;
      const est = d.estimate === null ? "withheld" : (d.estimate >= 0 ? "+" : "") + (d.estimate * 100).toFixed(1) + " points";
      rows.push({ total: true, cells: [name, "Difference within strata (" + d.strata_used + " strata)", "", "", est, ci(d.ci_low, d.ci_high)] });
    });
    simpleTable("table-comparison", ["Outcome", "Group", "Learners", "Of whom", "Rate", "95% interval"], rows);
    $("comparison-caveat").textContent = report.caveat;
  }

  async function refreshWaiting() {
    const report = await (await api("/v1/reports/waiting", { ...areaFilters(), by: $("f-waiting-by").value })).json();
    integration.waiting = report;
    renderWaiting(report);
  }

  async function loadIntegration() {
    const a = areaFilters();
    const [indicators, waiting, bridges, comparison] = await Promise.all([
      api("/v1/reports/indicators", a).then((r) => r.json()),
      api("/v1/reports/waiting", { ...a, by: $("f-waiting-by").value }).then((r) => r.json()),
      api("/v1/reports/bridges", a).then((r) => r.json()),
      api("/v1/reports/esol-comparison", a).then((r) => r.json()),
    ]);
    integration = { indicators, waiting, bridges, comparison };
    fillQuarters(indicators);
  }

  function renderIntegration() {
    if (!integration) return;
    renderIndicators();
    renderWaiting(integration.waiting);
    renderBridges(integration.bridges);
    renderComparison(integration.comparison);
  }
  let integration = null;

  // ---------- filters -------------------------------------------------------------------
  function option(value, label) { return el("option", { value }, label); }

  function fillFilters() {
    const ca = $("f-ca");
    ca.replaceChildren(option("", meta.combined_authorities.length > 1 ? "All in my scope" : meta.combined_authorities[0].name),
      ...(meta.combined_authorities.length > 1 ? meta.combined_authorities.map((c) => option(c.code, c.name)) : []));
    fillLas();
    $("f-programme").replaceChildren(option("", "All programmes"), ...meta.programmes.map((p) => option(p.code, p.name)));
    $("f-level").replaceChildren(option("", "All levels"), ...meta.levels.map((l) => option(l.code, l.name)));
  }
  function fillLas() {
    const chosen = $("f-ca").value;
    const cas = meta.combined_authorities.filter((c) => !chosen || c.code === chosen);
    $("f-la").replaceChildren(option("", "All boroughs"),
      ...cas.flatMap((c) => c.local_authorities.map((l) => option(l.code, l.name))));
  }
  /** Filters given in the page address (?from=2025-01&local_authority=…): shareable views. */
  function applyQueryFilters() {
    const q = new URLSearchParams(window.location.search);
    const set = (id, name) => { if (q.get(name)) $(id).value = q.get(name); };
    set("f-ca", "combined_authority");
    fillLas();
    set("f-la", "local_authority");
    set("f-programme", "programme");
    set("f-level", "level");
    set("f-from", "from");
    set("f-to", "to");
  }
  function filters() {
    return {
      combined_authority: $("f-ca").value, local_authority: $("f-la").value,
      programme: $("f-programme").value, level: $("f-level").value,
      from: $("f-from").value, to: $("f-to").value,
    };
  }

  // ---------- load ---------------------------------------------------------------------
  async function refresh() {
    const f = filters();
    $("status").textContent = "Loading…";
    try {
      const [summary, byLa, byMonth] = await Promise.all([
        api("/v1/reports/summary", f).then((r) => r.json()),
        api("/v1/reports/breakdown", { ...f, by: "local_authority" }).then((r) => r.json()),
        api("/v1/reports/breakdown", { ...f, by: "month" }).then((r) => r.json()),
        loadIntegration(),
      ]);
      last = { summary, byLa, byMonth };
      renderAll();
      $("note").textContent = summary.disclosure.note;
      $("status").textContent = "Updated " + new Date().toLocaleTimeString("en-GB");
      document.body.dataset.loaded = "true";
    } catch (err) {
      if (err instanceof AuthError) return showSignIn(err.message);
      $("status").textContent = "Could not load the reports: " + err.message;
    }
  }

  let last = null;
  function renderAll() {
    if (!last) return;
    renderKpis(last.summary);
    renderLa(last.byLa);
    renderMonths(last.byMonth);
    renderEsol(last.summary);
    renderReasons(last.summary);
    renderIntegration();
  }
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(renderAll, 150);
  });

  async function start() {
    takeKeyFromFragment();
    if (!key()) return showSignIn("");
    try {
      meta = await (await api("/v1/reports/meta")).json();
    } catch (err) {
      return showSignIn(err.message);
    }
    $("signin").hidden = true;
    $("dash").hidden = false;
    $("who").hidden = false;
    $("who-name").textContent = meta.principal.name + " · " + meta.principal.role;
    fillFilters();
    applyQueryFilters();
    await refresh();
  }

  async function exportIndicators() {
    try {
      const res = await api("/v1/reports/indicators.csv", areaFilters());
      const url = URL.createObjectURL(await res.blob());
      const a = el("a", { href: url, download: "commonground-indicators.csv" });
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (err) {
      $("status").textContent = "Export failed: " + err.message;
    }
  }

  async function exportCsv() {
    try {
      const res = await api("/v1/reports/export.csv", { ...filters(), by: "local_authority" });
      const url = URL.createObjectURL(await res.blob());
      const a = el("a", { href: url, download: "commonground-local-authorities.csv" });
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (err) {
      $("status").textContent = "Export failed: " + err.message;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(KEY_STORE, $("key").value.trim());
      $("key").value = "";
      start();
    });
    $("sign-out").addEventListener("click", () => { sessionStorage.removeItem(KEY_STORE); showSignIn(""); });
    $("filters").addEventListener("change", (ev) => { if (ev.target.id === "f-ca") fillLas(); refresh(); });
    $("reset").addEventListener("click", () => { $("filters").reset(); fillLas(); refresh(); });
    $("export").addEventListener("click", exportCsv);
    $("export-indicators").addEventListener("click", exportIndicators);
    $("f-quarter").addEventListener("change", renderIndicators);
    $("f-waiting-by").addEventListener("change", () => {
      refreshWaiting().catch((err) => {
        if (err instanceof AuthError) return showSignIn(err.message);
        $("status").textContent = "Could not load the reports: " + err.message;
      });
    });
    start();
  });
})();
