// The request log: filters (key, model, channel, status, time), a page at a time from the
// server, each row's chain of attempts and its cost.
import { api, badge, button, channelNames, clear, field, h, input, isOperator, keyNames, number, params, select, setParams, start, table, usd, when } from "../lib.js";

const PAGE = 50;

function localInput(ms) {
  if (!ms) return "";
  const d = new Date(Number(ms));
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function msOf(value) {
  return value ? String(new Date(value).getTime()) : "";
}

function status(row) {
  const kind = row.status < 400 ? "ok" : row.status === 499 ? "warn" : "err";
  return badge(String(row.status), kind);
}

function attempts(row, channels) {
  const list = row.attempts || [];
  if (!list.length && !row.error) return null;
  return h(
    "details",
    {},
    h("summary", { text: `${list.length} attempt${list.length === 1 ? "" : "s"}` }),
    h(
      "ol.attempts",
      {},
      list.map((a) => h("li", {}, `${channels.get(a.channel_id) || "#" + a.channel_id}: ${a.status}${a.code ? " " + a.code : ""}, ${number(a.ms)} ms`)),
    ),
    row.error ? h("div.muted", { text: row.error }) : null,
  );
}

start(async (root) => {
  const query = params();
  const [keys, channels] = await Promise.all([keyNames(), channelNames()]);
  const keySelect = select("key_id", [["", "any key"], ...[...keys].map(([id, name]) => [String(id), `${name} (#${id})`])], query.get("key_id") || "");
  const model = input("model", { value: query.get("model") || "", placeholder: "any model" });
  const channel = select("channel_id", [["", "any channel"], ...[...channels].map(([id, name]) => [String(id), name])], query.get("channel_id") || "");
  const statusSelect = select(
    "status",
    [["", "any status"], ["ok", "succeeded"], ["error", "failed"], ["200", "200"], ["400", "400"], ["429", "429"], ["499", "499 (client left)"], ["502", "502"], ["503", "503"], ["504", "504"]],
    query.get("status") || "",
  );
  const since = input("since", { type: "datetime-local", value: localInput(query.get("since_ms")) });
  const until = input("until", { type: "datetime-local", value: localInput(query.get("until_ms")) });
  const results = h("div", { id: "log-results" });
  const cursors = [];

  const filters = () => ({
    key_id: isOperator ? keySelect.value : "",
    model: model.value.trim(),
    channel_id: isOperator ? channel.value : "",
    status: statusSelect.value,
    since_ms: msOf(since.value),
    until_ms: msOf(until.value),
  });

  async function load(after) {
    const wanted = filters();
    setParams(wanted);
    const q = new URLSearchParams(Object.entries({ ...wanted, limit: PAGE, after: after || "" }).filter(([, v]) => v !== ""));
    const page = await api("GET", `/admin/logs?${q}`);
    const columns = [
      ["Time", (r) => h("span", { title: r.request_id }, when(r.created_ms)), { class: "nowrap" }],
      isOperator ? ["Key", (r) => keys.get(r.key_id) || (r.key_id === null ? "—" : `#${r.key_id}`)] : null,
      ["Endpoint", (r) => (r.endpoint.startsWith("console.") ? h("span", {}, badge("console", "info"), " ", r.endpoint.slice(8)) : r.endpoint)],
      ["Model", (r) => h("span", {}, r.model || "—", r.served_model && r.served_model !== r.model ? h("div.muted", { text: `→ ${r.served_model}` }) : null)],
      isOperator ? ["Channel", (r) => (r.channel_id ? channels.get(r.channel_id) || `#${r.channel_id}` : "—")] : null,
      ["Status", status],
      ["Tokens in / out", (r) => `${number(r.prompt_tokens)} / ${number(r.completion_tokens)}${r.cached_tokens ? ` (${number(r.cached_tokens)} cached)` : ""}`, { class: "num" }],
      ["Cost", (r) => usd(r.cost_nano), { class: "num" }],
      ["Latency", (r) => `${number(r.latency_ms)} ms${r.ttfb_ms !== null && r.ttfb_ms !== undefined ? ` (first byte ${number(r.ttfb_ms)})` : ""}`, { class: "num" }],
      ["", (r) => h("div", {}, r.stream ? badge("stream") : null, isOperator ? attempts(r, channels) : r.error ? h("div.muted", { text: r.error }) : null)],
    ].filter(Boolean);
    clear(
      results,
      table(columns, page.data, { empty: "No calls match.", rowAttrs: (r) => ({ "data-request-id": r.request_id }) }),
      h(
        "div.pager",
        {},
        button("Newest", () => {
          cursors.length = 0;
          load();
        }, { disabled: !after }),
        button("Older →", () => {
          cursors.push(after);
          load(page.next);
        }, { disabled: !page.next, id: "older" }),
        h("span.muted", { text: `${page.data.length} rows${page.next ? ", more older" : ""}` }),
      ),
    );
  }

  const form = h(
    "form.panel.grid",
    {
      id: "log-filters",
      onsubmit: (event) => {
        event.preventDefault();
        cursors.length = 0;
        load();
      },
    },
    isOperator ? field("Key", keySelect) : null,
    field("Model", model),
    isOperator ? field("Channel", channel) : null,
    field("Status", statusSelect),
    field("From", since),
    field("Until", until),
    h("div.actions", {}, h("button.primary", { type: "submit", text: "Filter" })),
  );
  clear(root, form, results);
  await load();
});
