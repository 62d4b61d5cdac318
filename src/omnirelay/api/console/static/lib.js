// What every console page shares: calling the admin API, building DOM, money and time,
// tables, forms and SVG charts. Hand-written, no dependencies, no build step.

const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content || "";
export const role = document.body.dataset.role;
export const ownKeyId = document.body.dataset.keyId ? Number(document.body.dataset.keyId) : null;
export const isOperator = role === "operator";
const SVG = "http://www.w3.org/2000/svg";

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `The gateway answered ${status}.`);
    this.status = status;
    this.code = error.code;
    this.param = error.param;
  }
}

// A call to the gateway with the session cookie; state-changing ones carry the CSRF token.
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (response.status === 401 && role) {
    location.assign("/console/signin?next=" + encodeURIComponent(location.pathname + location.search));
    throw new ApiError(401, null);
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export async function stream(path, body, onEvent, signal) {
  // POST a JSON body and read the server-sent events of the answer as they arrive.
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken },
    body: JSON.stringify(body),
    credentials: "same-origin",
    signal,
  });
  if (!response.ok) {
    const text = await response.text();
    throw new ApiError(response.status, text ? JSON.parse(text) : null);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(event, data.join("\n"));
    }
  }
}

// h("tag.class", {attr: value, onclick: fn}, child, ...): an element.
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else if (name === "value") node.value = value;
    else if (name === "checked") node.checked = Boolean(value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

// --- money and time ---------------------------------------------------------------------

// Nano-dollars (integers) as exact USD: every digit the ledger has, at least cents.
export function usd(nano) {
  if (nano === null || nano === undefined) return "—";
  let value = BigInt(nano);
  const sign = value < 0n ? "-" : "";
  if (value < 0n) value = -value;
  const whole = value / 1000000000n;
  let fraction = (value % 1000000000n).toString().padStart(9, "0").replace(/0+$/, "");
  if (fraction.length < 2) fraction = fraction.padEnd(2, "0");
  return `${sign}$${whole.toLocaleString("en-US")}.${fraction}`;
}

// "1.50" (USD as typed) -> "1.50"; empty -> null.
export function usdInput(text) {
  const value = String(text ?? "").trim();
  return value === "" ? null : value;
}

export function nanoToUsdText(nano) {
  if (nano === null || nano === undefined) return "";
  return usd(nano).replace(/[$,]/g, "");
}

export const number = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));

export function when(ms) {
  if (!ms) return "—";
  return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export const whenSeconds = (s) => (s ? when(s * 1000) : "—");

export function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

// --- page scaffolding -------------------------------------------------------------------

export function notice(message, kind = "info") {
  return h(`p.notice.${kind}`, { role: kind === "error" ? "alert" : "status", text: message });
}

export function card(title, value, attrs = {}) {
  return h("div.card", attrs, h("div.card-title", { text: title }), h("div.card-value", { text: value }));
}

export function section(title, ...children) {
  return h("section", {}, h("h2", { text: title }), ...children);
}

// A table: columns are [header, row => cell content, {class}?].
export function table(columns, rows, { empty = "Nothing here yet.", rowAttrs } = {}) {
  if (!rows.length) return h("p.muted.empty", { text: empty });
  return h(
    "div.table-wrap",
    {},
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, columns.map(([title, , opts]) => h("th", { class: opts?.class }, title)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            rowAttrs ? rowAttrs(row) : {},
            columns.map(([, cell, opts]) => h("td", { class: opts?.class }, cell(row))),
          ),
        ),
      ),
    ),
  );
}

export function badge(text, kind = "") {
  return h(`span.badge${kind ? "." + kind : ""}`, { text });
}

// A labelled form field around an input.
export function field(label, input, help) {
  return h("label.field", {}, h("span", { text: label }), input, help ? h("small.muted", { text: help }) : null);
}

export function input(name, attrs = {}) {
  return h("input", { name, id: `f-${name}`, ...attrs });
}

export function select(name, options, value, attrs = {}) {
  return h(
    "select",
    { name, id: `f-${name}`, ...attrs },
    options.map(([optValue, label]) => h("option", { value: optValue, selected: String(optValue) === String(value) }, label)),
  );
}

export function button(text, onclick, attrs = {}) {
  return h("button", { type: "button", onclick, ...attrs }, text);
}

// Run an async action from a button, showing its failure beside it.
export function guarded(where, action) {
  return async (event) => {
    const target = event?.currentTarget;
    if (target) target.disabled = true;
    where.replaceChildren();
    try {
      await action(event);
    } catch (error) {
      where.replaceChildren(notice(error.message, "error"));
    } finally {
      if (target) target.disabled = false;
    }
  };
}

export function params() {
  return new URLSearchParams(location.search);
}

export function setParams(values) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) {
    if (value !== null && value !== undefined && value !== "") query.set(name, value);
  }
  const text = query.toString();
  history.replaceState(null, "", location.pathname + (text ? "?" + text : ""));
}

// Every page calls start(render): the sign-out button, then the page drawn into #page.
export function start(render) {
  document.getElementById("sign-out")?.addEventListener("click", async () => {
    try {
      await api("DELETE", "/console/api/session");
    } finally {
      location.assign("/console/signin");
    }
  });
  const root = document.getElementById("page");
  Promise.resolve()
    .then(() => render(root))
    .catch((error) => clear(root, notice(error.message, "error")))
    .finally(() => root.removeAttribute("aria-busy"));
}

// Names of keys and channels by id, for tables that show ids.
export async function keyNames() {
  if (!isOperator) return new Map([[ownKeyId, `key ${ownKeyId}`]]);
  const keys = await api("GET", "/admin/keys?include_deleted=1");
  return new Map(keys.data.map((key) => [key.id, key.deleted_at ? `${key.name} (deleted)` : key.name]));
}

export async function channelNames() {
  if (!isOperator) return new Map();
  const channels = await api("GET", "/admin/channels");
  return new Map(channels.data.map((channel) => [channel.id, channel.name]));
}

// --- charts -----------------------------------------------------------------------------

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) if (child) node.append(child);
  return node;
}

// A bar chart as SVG: points are {label, value, title}. Each bar keeps its value in
// data-value, so what is drawn can be checked against the numbers it came from.
export function barChart(points, { width = 720, height = 180, format = String, label = "chart" } = {}) {
  const pad = { top: 12, right: 8, bottom: 24, left: 64 };
  const max = Math.max(0, ...points.map((p) => p.value));
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const step = plotW / Math.max(points.length, 1);
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart",
    role: "img",
    "aria-label": label,
    "data-points": points.length,
    "data-max": max,
  });
  chart.append(svg("title", {}, document.createTextNode(label)));
  for (const fraction of [0, 0.5, 1]) {
    const y = pad.top + plotH * (1 - fraction);
    chart.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: "grid" }));
    const text = svg("text", { x: pad.left - 6, y: y + 4, "text-anchor": "end", class: "axis" });
    text.textContent = format(max * fraction);
    chart.append(text);
  }
  const every = Math.max(1, Math.ceil(points.length / 8));
  points.forEach((point, i) => {
    const barH = max > 0 ? (point.value / max) * plotH : 0;
    const x = pad.left + i * step + step * 0.1;
    const bar = svg("rect", {
      x: x.toFixed(2),
      y: (pad.top + plotH - barH).toFixed(2),
      width: Math.max(step * 0.8, 1).toFixed(2),
      height: barH.toFixed(2),
      class: "bar",
      "data-value": point.value,
      "data-label": point.label,
    });
    bar.append(svg("title", {}, document.createTextNode(point.title || `${point.label}: ${format(point.value)}`)));
    chart.append(bar);
    if (i % every === 0) {
      const text = svg("text", { x: (x + step * 0.4).toFixed(2), y: height - 6, "text-anchor": "middle", class: "axis" });
      text.textContent = point.label;
      chart.append(text);
    }
  });
  return chart;
}

// Every UTC day of [start, end) with its row (or zeros), for a daily chart.
export function everyDay(start, end, rows) {
  const byDay = new Map(rows.map((row) => [row.day, row]));
  const days = [];
  for (let day = new Date(start + "T00:00:00Z"); isoDay(day) < end; day.setUTCDate(day.getUTCDate() + 1)) {
    const name = isoDay(day);
    days.push(byDay.get(name) || { day: name, requests: 0, cost_nano: 0, prompt_tokens: 0, completion_tokens: 0 });
  }
  return days;
}

// Counts on an axis: whole numbers only.
export const countTick = (n) => (Number.isInteger(n) ? number(n) : "");

export const shortUsd = (nano) => {
  const dollars = Number(nano) / 1e9;
  if (dollars === 0) return "$0";
  if (dollars < 0.01) return "$" + dollars.toPrecision(2);
  return "$" + dollars.toLocaleString("en-US", { maximumFractionDigits: 2 });
};
