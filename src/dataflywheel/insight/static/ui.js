"use strict";
// Helpers shared by every view: DOM building (never innerHTML with data), formatting,
// charts, and requests carrying the admin key kept in sessionStorage.
const KEY_NAME = "flywheel-key";
const REPORT = window.FLYWHEEL_DATA || null;
const PLOT_LAYOUT = {
  margin: { l: 52, r: 16, t: 8, b: 36 }, legend: { orientation: "h", y: -0.2 },
  hovermode: "x unified", paper_bgcolor: "#fff", plot_bgcolor: "#fff", font: { size: 12 },
};
const PLOT_CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };
const COLORS = { blue: "#2e6fdb", green: "#12b76a", grey: "#98a2b3", red: "#f04438", amber: "#f79009" };

function $(id) { return document.getElementById(id); }

// h("div", {class: "x", onclick: f}, child, "text", [more]) -> element; strings become text nodes.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  return append(el, ...children);
}
function append(el, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}
function replace(el, ...children) { el.replaceChildren(); return append(el, ...children); }

function getKey() { return sessionStorage.getItem(KEY_NAME) || ""; }
function setKey(value) {
  if (value) sessionStorage.setItem(KEY_NAME, value); else sessionStorage.removeItem(KEY_NAME);
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
async function api(path, options) {
  const opts = options || {};
  const headers = { Accept: "application/json" };
  if (getKey()) headers.Authorization = `Bearer ${getKey()}`;
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: opts.method || "GET", headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message);
  }
  return body;
}
function errorBox(error) {
  const hint = error.status === 401 || error.status === 403
    ? " Enter an admin key at the top right (it stays in this tab only)." : "";
  return h("p", { class: "error", role: "alert" }, `${error.message}.${hint}`);
}

function num(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? value.toLocaleString("en") : (+value.toPrecision(4)).toLocaleString("en");
}
function pct(value) { return value === null || value === undefined ? "—" : `${(value * 100).toFixed(1)} %`; }
function when(ts) {
  if (ts === null || ts === undefined) return "—";
  return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 16) + " UTC";
}

// A "what is this?" disclosure with the definition and where the docs explain it.
function define(text, anchor) {
  return h("details", { class: "define" }, h("summary", {}, "What is this?"),
    h("p", {}, text), h("p", { class: "muted" }, `More in docs/insight.md#${anchor}`));
}
function card(title, ...body) { return h("section", { class: "card" }, h("h2", {}, title), body); }
function wideCard(title, ...body) { return h("section", { class: "card wide" }, h("h2", {}, title), body); }
function empty(text) { return h("p", { class: "empty" }, text); }

function table(columns, rows, emptyText) {
  if (!rows.length) return empty(emptyText || "Nothing yet.");
  return h("div", { class: "scroll" }, h("table", { class: "rows" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((cell) => h("td", {}, cell)))))));
}

function chart(traces, layout) {
  const el = h("div", { class: "chart" });
  const usable = traces.filter((t) => (t.x || []).length);
  if (!usable.length) return empty("No data in this range yet.");
  requestAnimationFrame(() => Plotly.newPlot(el, usable, Object.assign({}, PLOT_LAYOUT, layout || {}), PLOT_CONFIG));
  return el;
}
function series(rows, field, name, more) {
  return Object.assign({ x: rows.map((r) => r.date), y: rows.map((r) => r[field]), name, type: "scatter", mode: "lines" }, more || {});
}

// An admin action: asks for confirmation, then calls the API; reports the outcome in `where`.
function actionButton(label, question, run, where) {
  return h("button", {
    class: "action", type: "button",
    onclick: async (event) => {
      if (!window.confirm(question)) return;
      event.target.disabled = true;
      try {
        await run();
        replace(where, h("p", { class: "ok", role: "status" }, `${label}: done.`));
        setTimeout(route, 300);
      } catch (error) {
        replace(where, errorBox(error));
        event.target.disabled = false;
      }
    },
  }, label);
}
function adminUnlocked() { return Boolean(getKey()) && !REPORT; }
