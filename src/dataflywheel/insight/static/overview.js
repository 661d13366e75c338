// The first screen: the verdict, the pictures that answer "is it compounding?", then each
// health condition's evidence as small charts and tables with its next action.
const DEFINITIONS = {
  usage: ["Daily active users (anyone with an event that day, UTC) and events per day. A turning flywheel shows both rising or holding as models improve.", "dau-and-events"],
  quality: ["Offline quality of each model version on a temporal holdout (the primary metric, e.g. NDCG@10), in training order. The champion is the version serving now; diamonds mark promotions, crosses rollbacks.", "model-quality-by-version"],
  strong: ["Share of feedback events that are strong signals (explicit likes, ratings, corrections, labels, purchases) per day. Strong signal is what teaches the model most.", "strong-signal-share"],
  supply: ["Items created per day (their created_at) and the share of clicks that went to items younger than 7 days. Below: of the items created in the range, the median time from creation to the first impression and to the first strong signal, and the creators (distinct creator_id attributes) behind them.", "supply"],
  slots: ["Click-through of the slots the model chose (propensity at least 0.5) against the slots exploration filled, per day. Not matched by position: exploration never fills the top three positions, so part of a gap is their advantage; the health verdict's condition 3 compares the two at matched positions.", "model-slots-vs-exploration"],
};

function verdictText(health) {
  if (health.verdict === "stalled") return `Stalled at condition ${health.stalled_at}`;
  if (health.verdict === "spinning") return "Spinning: the loop compounds";
  return "Not enough data yet";
}

function drawOverview(data, view) {
  const health = data.health;
  const stalled = health.conditions.find((c) => c.id === health.stalled_at);
  const next = stalled || health.conditions.find((c) => c.status !== "pass");
  const hero = h("section", { class: `card wide hero ${health.verdict}` },
    h("div", { class: "verdict-line" },
      h("span", { id: "verdict-text", class: `badge ${health.verdict}` }, `Flywheel: ${health.verdict === "stalled" ? `stalled at condition ${health.stalled_at}` : health.verdict}`),
      h("strong", {}, verdictText(health)),
      health.window ? h("span", { class: "muted" }, `evidence from ${health.window.from} to ${health.window.to}`) : null),
    h("ol", { class: "steps" }, health.conditions.map((c) =>
      h("li", { class: `step ${c.status}` }, h("span", { class: "dot" }), `${c.id}. ${c.name}`, h("span", { class: `status ${c.status}` }, c.status)))),
    next ? h("p", { class: "next-action" }, h("b", {}, "Next: "), next.next_action) : h("p", { class: "next-action ok" }, h("b", {}, "Next: "), health.conditions[health.conditions.length - 1].next_action));
  const rows = data.kpis.rows;
  const usage = chart([series(rows, "dau", "active users"), series(rows, "events", "events", { yaxis: "y2", line: { dash: "dot" } })],
    { margin: { l: 52, r: 60, t: 8, b: 36 }, yaxis: { title: { text: "users" } }, yaxis2: { title: { text: "events" }, overlaying: "y", side: "right", showgrid: false }, xaxis: { type: "date" } });
  const strong = chart([series(rows, "strong_share", "strong share", { fill: "tozeroy", line: { color: COLORS.green } })],
    { yaxis: { tickformat: ".0%", rangemode: "tozero" }, xaxis: { type: "date" }, showlegend: false });
  const slots = data.slots_by_day || [];
  const slotChart = chart([series(slots, "model_ctr", "model slots", { line: { color: COLORS.blue } }),
    series(slots, "exploration_ctr", "exploration slots", { line: { color: COLORS.grey, dash: "dot" } })],
  { yaxis: { tickformat: ".1%", rangemode: "tozero" }, xaxis: { type: "date" } });
  replace(view, hero,
    card("Active users and events per day", usage, define(...DEFINITIONS.usage)),
    card("Model quality by version", qualityChart(data.model_history), define(...DEFINITIONS.quality)),
    card("Share of strong signal", strong, define(...DEFINITIONS.strong)),
    card("Click-through: model's picks vs exploration", slotChart, define(...DEFINITIONS.slots)),
    h("h2", { class: "band" }, "The four conditions, with their evidence"),
    health.conditions.map((c) => conditionCard(c, health)),
    card("Sessions per day", chart([series(rows, "sessions", "sessions", { type: "bar", marker: { color: COLORS.grey } })], { xaxis: { type: "date" }, showlegend: false })),
    card("Retention by cohort (share of a day's new users back after N days)", retention(data.kpis.retention || [])),
    card("Supply: new items and their share of clicks", supplyChart(rows), supplyLine(data.kpis.supply || {}), define(...DEFINITIONS.supply)));
}

function supplyChart(rows) {
  return chart([series(rows, "new_items", "new items", { type: "bar", marker: { color: COLORS.grey } }),
    series(rows, "new_item_click_share", "clicks on items < 7 days", { yaxis: "y2", line: { color: COLORS.blue } })],
  { margin: { l: 52, r: 60, t: 8, b: 36 }, yaxis: { title: { text: "items" } }, yaxis2: { tickformat: ".0%", rangemode: "tozero", overlaying: "y", side: "right", showgrid: false }, xaxis: { type: "date" } });
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 3600) return `${num(seconds / 60)} min`;
  return seconds < 86400 ? `${num(seconds / 3600)} h` : `${num(seconds / 86400)} days`;
}

function supplyLine(s) {
  if (!s.items_created) return empty("No item created in this range.");
  return h("p", { class: "muted" }, `${num(s.items_created)} items created by ${num(s.creators)} creators; ` +
    `median time to first impression ${duration(s.median_seconds_to_first_impression)}, ` +
    `to first strong signal ${duration(s.median_seconds_to_first_strong_signal)}.`);
}

function qualityChart(history) {
  const points = (history && history.points || []).filter((p) => p.value !== null && p.value !== undefined);
  if (!points.length) return empty("No model version with an offline metric yet.");
  const pick = (f) => points.filter(f);
  const trace = (ps, name, marker, mode) => ({ x: ps.map((p) => p.version), y: ps.map((p) => p.value), name, type: "scatter", mode: mode || "markers", marker, hovertemplate: "%{x}: %{y:.4f}<extra>" + name + "</extra>" });
  return chart([
    trace(points, history.metric, { color: COLORS.blue, size: 5 }, "lines+markers"),
    trace(pick((p) => p.promoted), "promoted", { symbol: "diamond", size: 9, color: COLORS.green }),
    trace(pick((p) => p.rolled_back), "rolled back", { symbol: "x", size: 12, color: COLORS.red }),
    trace(pick((p) => p.status === "champion"), "champion (serving now)", { symbol: "star", size: 16, color: COLORS.amber, line: { color: "#7a2e0e", width: 1 } }),
  ], { hovermode: "closest", xaxis: { type: "category" }, yaxis: { title: { text: history.metric } } });
}

function conditionCard(c, health) {
  const here = health.stalled_at === c.id ? " stalled-here" : "";
  return h("section", { class: `card condition${here}` },
    h("h3", {}, h("span", {}, `${c.id}. ${c.name}`), h("span", { class: `status ${c.status}` }, c.status)),
    h("p", { class: "next-action" }, h("b", {}, "Next: "), c.next_action),
    h("div", { class: "muted" }, `confidence ${pct(c.confidence)} (how much evidence this rests on)`),
    (c.views || []).map(evidenceView),
    h("p", { class: "muted small" }, `How it is judged: docs/insight.md#the-flywheel-health-verdict (condition ${c.id})`));
}

function evidenceView(v) {
  if (v.kind === "facts") {
    return h("dl", { class: "facts" }, v.items.map((f) => [h("dt", {}, f.label), h("dd", {}, f.value)]));
  }
  if (v.kind === "note") return h("p", { class: "muted small" }, v.text);
  if (v.kind === "table") {
    return h("div", { class: "evidence" }, h("h4", {}, v.title), table(v.columns, v.rows),
      v.footer ? h("p", { class: "small" }, v.footer) : null);
  }
  const s = v.series[0] || { y: [] };
  const trace = v.kind === "line"
    ? { x: v.x, y: s.y, name: s.name, type: "scatter", mode: "lines+markers", line: { color: COLORS.blue } }
    : { x: v.x, y: s.y, name: s.name, type: "bar", text: v.hover, marker: { color: (v.highlight || v.x.map(() => true)).map((on) => (on ? COLORS.green : COLORS.grey)) } };
  return h("div", { class: "evidence" }, h("h4", {}, v.title),
    chart([trace], { showlegend: false, hovermode: "closest", xaxis: { type: "category" }, yaxis: v.percent ? { tickformat: ".0%" } : {}, height: 200, margin: { l: 48, r: 8, t: 4, b: 40 } }));
}

function retention(rows) {
  const recent = rows.slice(-14).reverse();
  return table(["Cohort (first day)", "Users", "Day 1", "Day 7", "Day 14", "Day 30"],
    recent.map((r) => [r.cohort, num(r.users), pct(r.day_1), pct(r.day_7), pct(r.day_14), pct(r.day_30)]),
    "No cohorts in this range yet.");
}
