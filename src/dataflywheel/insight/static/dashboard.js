"use strict";
// Draws the dashboard from one JSON document: embedded (report) or fetched every 10 s (live).
(function () {
  const REFRESH_MS = 10000;
  const params = new URLSearchParams(location.search);
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("key")) sessionStorage.setItem("flywheel-key", hash.get("key"));
  const key = sessionStorage.getItem("flywheel-key");
  const layout = {
    margin: { l: 48, r: 16, t: 8, b: 32 }, legend: { orientation: "h", y: -0.18 },
    xaxis: { type: "date" }, hovermode: "x unified", paper_bgcolor: "#fff", plot_bgcolor: "#fff",
  };
  const config = { displaylogo: false, responsive: true };
  const $ = (id) => document.getElementById(id);

  function esc(value) {
    return String(value).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
  }
  function fmt(value, depth) {
    const d = depth || 0;
    if (value === null || value === undefined) return "—";
    if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString() : String(+value.toFixed(4));
    if (Array.isArray(value)) return value.map((v) => fmt(v, d + 1)).join(d ? ", " : "<br>");
    if (typeof value === "object") {
      const parts = Object.entries(value).map(([k, v]) => `${esc(k)}: ${fmt(v, d + 1)}`);
      return d ? `(${parts.join(", ")})` : parts.join("<br>");
    }
    return esc(value);
  }
  function plot(id, traces, extra) {
    const el = $(id);
    if (!traces.length || traces.every((t) => !t.x.length)) {
      Plotly.purge(el);
      el.innerHTML = '<p class="empty">No data in this range yet.</p>';
      return;
    }
    if (el.querySelector(".empty")) el.innerHTML = "";
    Plotly.react(el, traces, Object.assign({}, layout, extra || {}), config);
  }
  function line(rows, field, name, more) {
    return Object.assign({ x: rows.map((r) => r.date), y: rows.map((r) => r[field]), name: name, type: "scatter", mode: "lines" }, more || {});
  }
  function table(rows, columns, empty) {
    if (!rows.length) return `<p class="empty">${esc(empty)}</p>`;
    const cols = columns || Object.keys(rows[0]);
    const head = cols.map((c) => `<th>${esc(c)}</th>`).join("");
    const body = rows.map((r) => "<tr>" + cols.map((c) => `<td>${fmt(r[c])}</td>`).join("") + "</tr>").join("");
    return `<div class="scroll"><table class="rows"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table></div>`;
  }

  function drawHealth(health) {
    const badge = $("verdict");
    const label = health.verdict === "stalled" ? `stalled at condition ${health.stalled_at}` : health.verdict;
    badge.textContent = `Flywheel: ${label}`;
    badge.className = `badge ${health.verdict}`;
    $("health-summary").textContent = health.reason || (health.window ? `Evidence from ${health.window.from} to ${health.window.to}.` : "");
    $("conditions").innerHTML = health.conditions.map((c) => {
      const evidence = Object.entries(c.evidence).filter(([k]) => k !== "thresholds")
        .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${fmt(v)}</td></tr>`).join("");
      const here = health.stalled_at === c.id ? " stalled-here" : "";
      return `<div class="condition${here}"><h3><span>${c.id}. ${esc(c.name)}</span><span class="status ${c.status}">${c.status}</span></h3>` +
        `<div class="muted">confidence ${fmt(c.confidence)}</div><table class="evidence">${evidence}</table>` +
        `<p class="next"><b>Next:</b> ${esc(c.next_action)}</p></div>`;
    }).join("");
  }

  function drawKpis(data) {
    const rows = data.kpis.rows;
    plot("chart-users", [line(rows, "dau", "DAU"), line(rows, "wau", "WAU"), line(rows, "mau", "MAU")]);
    plot("chart-sessions", [line(rows, "sessions", "sessions", { type: "bar" }),
      line(rows, "avg_session_seconds", "avg session (s)", { yaxis: "y2" })],
      { yaxis2: { overlaying: "y", side: "right", showgrid: false } });
    plot("chart-events", [line(rows, "events", "events", { type: "bar" }), line(rows, "strong_events", "strong events", { type: "bar" })],
      { barmode: "overlay" });
    plot("chart-strong", [line(rows, "strong_share", "strong share"), line(rows, "ctr", "CTR (all versions)")],
      { yaxis: { tickformat: ".1%" } });
    const byVersion = {};
    for (const r of data.versions_by_day) (byVersion[r.model_version || "no model"] ||= []).push(r);
    plot("chart-ctr", Object.entries(byVersion).map(([v, rs]) => line(rs, "ctr", v, { mode: "lines+markers" })),
      { yaxis: { tickformat: ".1%" } });
    const models = (data.kpis.models || []).filter((m) => m.online || m.data_until);
    const metricName = (data.health.conditions[1].evidence || {}).metric;
    plot("chart-models", [{
      x: models.map((m) => (m.online && m.online.first_served) || m.data_until),
      y: models.map((m) => (metricName && m.metrics[metricName]) ?? (m.online && m.online.ctr)),
      text: models.map((m) => `${m.version} (${m.status})`), mode: "markers+text", textposition: "top center",
      marker: { size: 10, color: models.map((m) => (m.status === "champion" ? "#12b76a" : "#667085")) },
      type: "scatter", name: metricName || "online CTR",
    }], { showlegend: false, yaxis: { title: { text: metricName || "online CTR" } } });
    $("transitions").innerHTML = table(data.transitions.slice().reverse().map((t) => Object.assign({}, t, { ts: new Date(t.ts * 1000).toISOString().replace("T", " ").slice(0, 19) })),
      ["ts", "version", "from", "to", "reason"], "No model transitions yet: train and promote a model to see it here.");
    const s = data.kpis.summary;
    $("quality").innerHTML = data.kpis.rows.length ? table([
      { measure: "rejected events", value: s.rejected }, { measure: "duplicate events", value: s.duplicates },
      { measure: "late events (> 1 day)", value: s.late_events }, { measure: "bot-like user-days", value: data.kpis.rows.reduce((a, r) => a + r.bot_users, 0) },
      { measure: "catalogue coverage of what was served", value: s.coverage }, { measure: "concentration (Gini) of what was served", value: s.gini },
    ], ["measure", "value"], "") : '<p class="empty">No events in this range yet.</p>';
    $("retention").innerHTML = table(data.kpis.retention.slice(-30).reverse(), null, "No cohorts in this range yet.");
    $("experiments").innerHTML = data.experiments.available ? table(data.experiments.rows, null, "No experiments yet.")
      : '<p class="empty">Experiments are not set up in this store yet.</p>';
    $("labels").innerHTML = data.labels.available ? table(data.labels.rows, null, "The label queue is empty.")
      : '<p class="empty">No label queue in this store yet.</p>';
    $("status").textContent = (data.kpis.note ? data.kpis.note + " · " : "") +
      `updated ${new Date(data.generated_at * 1000).toLocaleTimeString()}`;
  }

  function draw(data) {
    drawHealth(data.health);
    drawKpis(data);
  }

  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const query = new URLSearchParams();
      for (const name of ["from", "to"]) if (params.get(name)) query.set(name, params.get(name));
      const response = await fetch(`/v1/dashboard?${query}`, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
      const body = await response.json();
      if (!response.ok) {
        $("status").textContent = `${body.error ? body.error.message : response.statusText}` +
          (response.status === 401 ? " — open this page as /#key=YOUR_ADMIN_KEY" : "");
        return;
      }
      draw(body);
    } catch (error) {
      $("status").textContent = `cannot reach the server (${error}); retrying`;
    } finally {
      busy = false;
    }
  }

  if (window.FLYWHEEL_DATA) {
    draw(window.FLYWHEEL_DATA);
  } else {
    refresh();
    setInterval(refresh, REFRESH_MS);
  }
})();
