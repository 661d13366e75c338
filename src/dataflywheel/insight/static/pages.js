// The pages behind the overview: models, experiments, label queue, users, items, value of
// data and decision deployments. Each fetches what it shows when opened.
const PAGES = {};

PAGES.models = async (view) => {
  const data = await api("/v1/dashboard/models");
  const status = h("div", {});
  const champion = data.models.find((m) => m.status === "champion");
  const metricNames = [...new Set(data.models.flatMap((m) => Object.keys(m.metrics)))].sort().slice(0, 4);
  const rows = data.models.map((m) => [
    m.version, m.name, h("span", { class: `pill ${m.status}` }, m.status), when(m.created_at),
    ...metricNames.map((k) => num(m.metrics[k])),
    m.rollback ? `rolled back: ${m.rollback.reason}${m.rollback.restored ? ` (restored ${m.rollback.restored})` : ""}` : "",
    adminUnlocked() && m.status !== "champion"
      ? actionButton(`Promote ${m.version}`, `Make ${m.version} the champion? It serves every user right away.`,
        () => api(`/v1/models/${encodeURIComponent(m.version)}/promote`, { method: "POST", body: { reason: "promoted from the dashboard" } }), status)
      : "",
  ]);
  replace(view,
    wideCard("Model quality by version", qualityChart(data.history), define(...DEFINITIONS.quality)),
    wideCard("Registry",
      adminUnlocked() && champion
        ? h("p", {}, actionButton(`Roll back ${champion.version}`, `Roll back ${champion.version} and restore the previous champion?`,
          () => api("/v1/models/rollback", { method: "POST", body: { reason: "rolled back from the dashboard" } }), status))
        : h("p", { class: "muted" }, "Read-only. Enter an admin key to promote or roll back from here."),
      status,
      table(["Version", "Model", "Status", "Trained", ...metricNames, "Rollback reason", ""], rows, "No model trained yet: run flywheel train.")),
    wideCard("Promotions, rollbacks and other transitions",
      table(["When", "Version", "From", "To", "Reason"],
        data.transitions.map((t) => [when(t.ts), t.version, t.from || "—", t.to, t.reason]), "No transitions yet.")),
    wideCard("Audit log",
      table(["When", "Who", "Action", "Subject", "Detail"],
        data.audit.map((a) => [when(a.ts), a.actor, a.action, a.subject, a.detail]), "Nothing audited yet (erasures, key changes, automatic rollbacks).")));
};

PAGES.experiments = async (view, params) => {
  const listing = await api("/v1/dashboard/experiments");
  const picked = params.get("id") || (listing.rows[0] && listing.rows[0].id);
  const list = table(["Experiment", "Name", "Type", "Status", "Started"],
    listing.rows.map((e) => [h("a", { href: `#/experiments?id=${encodeURIComponent(e.id)}` }, e.id), e.name || "", e.kind || "", e.status || "", when(e.created_at)]),
    "No experiments yet: flywheel experiment create, or POST /v1/experiments.");
  replace(view, wideCard("Experiments", list));
  if (picked) append(view, experimentDetail(await api(`/v1/dashboard/experiments/${encodeURIComponent(picked)}`)));
};

function experimentDetail(exp) {
  const status = h("div", {});
  const analysis = Array.isArray(exp.analysis) ? exp.analysis : exp.analysis ? [{ arm: "B vs A", metric: "preference", result: exp.analysis }] : [];
  const withResult = analysis.filter((a) => a.result);
  const lift = chart([{
    x: withResult.map((a) => a.result.lift), y: withResult.map((a) => `${a.arm}`), type: "scatter", mode: "markers",
    error_x: { type: "data", symmetric: false, array: withResult.map((a) => a.result.high - a.result.lift), arrayminus: withResult.map((a) => a.result.lift - a.result.low) },
    marker: { size: 10, color: COLORS.blue }, name: "lift",
  }], { hovermode: "closest", showlegend: false, height: 130 + 40 * withResult.length, margin: { l: 100, r: 16, t: 8, b: 44 }, xaxis: { zeroline: true, zerolinecolor: COLORS.red, title: { text: `lift in ${exp.metric || "metric"} vs control (95 % interval)` } }, yaxis: { type: "category" } });
  // The card's box takes the plot's own height (the default .chart box would leave a gap).
  if (lift.classList && lift.classList.contains("chart")) lift.style.height = `${130 + 40 * withResult.length}px`;
  const d = exp.decision || {};
  const srm = exp.srm;
  const guards = analysis.flatMap((a) => (a.guardrails || []).map((g) => [a.arm, g.metric || g.name || "guardrail", g.passed ? "passed" : "failed", g.error || ""]));
  return wideCard(`Experiment ${exp.id}${exp.name ? ` — ${exp.name}` : ""}`,
    h("p", { class: `next-action decision ${d.verdict}` }, h("b", {}, `Decision: ${d.verdict || "—"}`), d.arm ? ` (arm ${d.arm})` : "", d.reason ? ` — ${d.reason}` : ""),
    adminUnlocked() && exp.status === "running"
      ? actionButton(`Stop ${exp.id}`, `Stop experiment ${exp.id}? Versions under test go back to candidate.`,
        () => api(`/v1/experiments/${encodeURIComponent(exp.id)}/stop`, { method: "POST" }), status)
      : null,
    status,
    table(["Arm", "Serves", "Weight", "Users", "Lists", "Metrics"], (exp.arms || []).map((a) => [
      a.name, a.model_version || a.policy || "—", num(a.weight), num(a.users), num(a.impressions),
      Object.entries(a.metrics || {}).map(([k, v]) => `${k} ${num(v)}`).join(" · ") || (a.credit !== undefined ? `credit ${num(a.credit)}` : "—")])),
    h("h4", {}, "Lift with its interval"), withResult.length ? lift : empty("Collecting: no analysis yet."),
    h("h4", {}, "Lift over time"), timelineChart(exp),
    h("p", {}, srm ? `Sample ratio check: p = ${num(srm.p_value)} — ${srm.mismatch ? "MISMATCH: assignment is broken, do not trust the result" : "no mismatch"}` : "Sample ratio check: not applicable yet."),
    h("h4", {}, "Guardrails"), table(["Arm", "Guardrail", "Result", "Note"], guards, "No guardrails set."));
}

// Cumulative lift per treatment arm at the end of each day, with its always-valid interval
// as a band and the zero line: where the band leaves zero, the status decides.
function timelineChart(exp) {
  const points = exp.timeline || [];
  if (!points.length) return empty(exp.type === "interleaving" ? "Interleaving tests have no lift over time: see the preference test." : "No day with two users per arm yet.");
  const arms = [...new Set(points.map((p) => p.arm))];
  const palette = [COLORS.blue, COLORS.amber, COLORS.green];
  const traces = arms.flatMap((arm, n) => {
    const rows = points.filter((p) => p.arm === arm);
    const color = palette[n % palette.length];
    return [
      series(rows, "high", `${arm} interval`, { line: { width: 0 }, showlegend: false, hoverinfo: "skip" }),
      series(rows, "low", `${arm}: 95 % interval (always valid)`, { line: { width: 0 }, fill: "tonexty", fillcolor: n ? "rgba(247,144,9,0.18)" : "rgba(46,111,219,0.18)" }),
      series(rows, "lift", `${arm}: lift`, { mode: "lines+markers", line: { color },
        customdata: rows.map((r) => `${r.n_control} / ${r.n_treatment} users`), hovertemplate: "%{y:.4g} (%{customdata})" }),
    ];
  });
  return chart(traces, {
    xaxis: { type: "date", tickformat: "%b %d" },
    yaxis: { zeroline: true, zerolinecolor: COLORS.red, zerolinewidth: 2, title: { text: `lift in ${exp.metric || "metric"}` } },
  });
}

PAGES.labels = async (view) => {
  const data = await api("/v1/labels/queue?limit=200");
  replace(view, wideCard("Label queue (pending cases, highest priority first)",
    table(["Case", "Task", "Priority", "Status", "User", "Item", "Queued", "Why"],
      data.cases.map((c) => [num(c.id), c.task || "", num(c.priority), c.status || "pending", c.user_id || "—", c.item_id || "—", when(c.created_at), c.reason || c.trigger || ""]),
      "The label queue is empty: triggers (POST /v1/triggers) send cases here.")));
};

function lookupForm(view, what, value, go) {
  const input = h("input", { id: `${what}-id`, name: "id", value: value || "", placeholder: `${what} id`, autocomplete: "off" });
  return h("form", { class: "lookup", onsubmit: (e) => { e.preventDefault(); location.hash = `#/${what}s?id=${encodeURIComponent(input.value.trim())}`; } },
    input, h("button", { type: "submit" }, `Look up ${what}`), go);
}

PAGES.users = async (view, params) => {
  const id = params.get("id");
  replace(view, wideCard("Look up a user", lookupForm(view, "user", id),
    h("p", { class: "muted small" }, "The preview below is computed by the champion without being logged: a lookup adds no impression.")));
  if (!id) return;
  const u = await api(`/v1/dashboard/users/${encodeURIComponent(id)}`);
  const p = u.preview;
  append(view,
    card(`Recommendations for ${u.user_id} now (preview, not logged)`,
      h("p", {}, `Source: ${p.source}${p.model_version ? ` ${p.model_version}` : ""}. `,
        p.folded_in ? h("b", {}, `${num(p.events_since_snapshot)} events since the model's snapshot are already folded in.`)
          : `${num(p.events_since_snapshot)} events since the model's snapshot.`),
      table(["#", "Item", "Score"], p.items.map((it, n) => [String(n + 1), itemLink(it.item_id), num(it.score)]), "Nothing to recommend.")),
    card("History (newest first)",
      h("p", {}, Object.entries(u.events_by_type).map(([t, n]) => `${t} ${num(n)}`).join(" · ") || "No events."),
      table(["When", "Event", "Item", "Value", "From a served list"], u.history.map((e) => [when(e.ts), e.type, e.item_id ? itemLink(e.item_id) : "—", num(e.value), e.from_list ? "yes" : "no"]), "No events yet.")),
    wideCard("Lists served to this user (logged)",
      u.served.length ? u.served.map((s) => h("div", { class: "served" },
        h("p", {}, h("b", {}, when(s.ts)), ` — model ${s.model_version || "none (cold start)"}, policy ${s.policy}`, s.experiment ? `, experiment ${s.experiment.id} arm ${s.experiment.arm}` : ""),
        table(["#", "Item", "Score", "Propensity"], s.items.map((it, n) => [String(n + 1), itemLink(it.item_id), num(it.score), num(it.propensity)]))))
        : empty("Nothing served to this user yet.")));
};

function itemLink(id) { return h("a", { href: `#/items?id=${encodeURIComponent(id)}` }, id); }

PAGES.items = async (view, params) => {
  const id = params.get("id");
  replace(view, wideCard("Look up an item", lookupForm(view, "item", id)));
  if (!id) return;
  const it = await api(`/v1/dashboard/items/${encodeURIComponent(id)}`);
  const cats = it.entity.categories.join(", ") || "none";
  append(view,
    card(`Item ${it.item_id}`,
      h("dl", { class: "facts" },
        h("dt", {}, "Categories"), h("dd", {}, cats), h("dt", {}, "Hidden"), h("dd", {}, it.entity.hidden ? "yes" : "no"),
        h("dt", {}, "First event"), h("dd", {}, when(it.first_event)), h("dt", {}, "First strong signal"), h("dd", {}, when(it.first_strong_signal))),
      table(["Event", "Events", "Users", "First"], it.events_by_type.map((r) => [r.type, num(r.events), num(r.users), when(r.first)]), "No events on this item yet.")),
    card(`Similar items (${it.similar.model_version || "no model yet"})`,
      table(["#", "Item", "Similarity"], it.similar.items.map((s, n) => [String(n + 1), itemLink(s.item_id), num(s.score)]), "No similar items: the champion has not seen this item.")));
};

PAGES.value = async (view) => {
  replace(view, wideCard("Value of data", h("p", { class: "muted" }, "Measuring (answered from the cache when the data did not change)…")));
  const v = await api("/v1/value?budget=60");
  const curve = v.curve || [];
  const band = [
    { x: curve.map((c) => c.events), y: curve.map((c) => c.high), type: "scatter", mode: "lines", line: { width: 0 }, showlegend: false, hoverinfo: "skip" },
    { x: curve.map((c) => c.events), y: curve.map((c) => c.low), type: "scatter", mode: "lines", line: { width: 0 }, fill: "tonexty", fillcolor: "rgba(46,111,219,0.18)", name: "95 % interval" },
    { x: curve.map((c) => c.events), y: curve.map((c) => c.ndcg), type: "scatter", mode: "lines+markers", line: { color: COLORS.blue }, name: "NDCG on holdout" },
  ];
  const nd = v.next_doubling;
  replace(view,
    wideCard("Learning curve: quality as the model gets more of the data",
      chart(band, { hovermode: "closest", xaxis: { title: { text: "training events" } }, yaxis: { title: { text: "NDCG" } } }),
      nd ? h("p", { class: "next-action" }, h("b", {}, "Next doubling of data: "), `expected gain ${num(nd.gain)} (95 % interval ${num(nd.low)} to ${num(nd.high)})`) : null,
      define("Models trained on growing fractions of the data, scored on the same holdout; the band is the 95 % interval. The fitted curve extrapolates what doubling the data would bring.", "value-of-data")),
    wideCard("Value by slice: what each kind of data contributes",
      table(["Kind", "Slice", "NDCG it carries (negative: harmful)", "95 % interval", "Verdict"],
        (v.slices || []).map((s) => [s.kind, s.name, num(s.delta), `${num(s.low)} to ${num(s.high)}`, h("span", { class: `pill ${s.verdict === "carries value" ? "champion" : s.verdict === "harmful" ? "failed" : "retired"}` }, s.verdict)]),
        "No slices measured yet."),
      (v.advice || []).length ? h("ul", {}, v.advice.map((a) => h("li", {}, typeof a === "string" ? a : a.text || a.message || JSON.stringify(a)))) : null));
};

PAGES.decisions = async (view) => {
  const data = await api("/v1/decisions");
  replace(view, wideCard("Decision deployments (Personalizer-compatible)",
    table(["Deployment", "Ranks", "Learned", "Mean learned reward", "Pending", "Apprentice agreement", "Ready to act"],
      data.deployments.map((d) => [d.deployment, num(d.ranks), num(d.learned), num(d.mean_learned_reward), num(d.pending_events),
        d.apprentice ? pct(d.apprentice.agreement) : "—", d.apprentice ? (d.apprentice.ready ? "yes" : "not yet") : "—"]),
      "No decision deployment yet: POST /personalizer/v1.0/rank creates the default one.")));
};
