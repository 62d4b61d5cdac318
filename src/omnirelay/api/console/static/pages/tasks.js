// Tasks of every family (videos, Midjourney, Suno, PicWish, Kling, Tripo, PDF parsing): the
// list, filtered and a page at a time; one task's state, progress, times, error, charge and
// its stored results drawn by kind (an image, a player for audio and video, else a link);
// cancelling an active one. Results come from /admin/tasks/{id}/results/{name}, which
// serves them to the operator's session (and seeks: videos ask for byte ranges).
import { api, badge, button, channelNames, clear, field, guarded, h, keyNames, notice, number, params, select, setParams, start, table, usd, when } from "../lib.js";

const PAGE = 50; // rows a page, unless the address asks (?limit=, 1 to 1000)
const STATES = ["submitting", "queued", "running", "succeeded", "failed", "cancelled", "expired"];
const ACTIVE = new Set(["submitting", "queued", "running"]);
const REFRESH_MS = 2000;

function stateBadge(task) {
  const kind = { succeeded: "ok", failed: "err", expired: "err", cancelled: "warn" }[task.state] || "info";
  return badge(task.state, kind);
}

function progress(task) {
  const value = Math.max(0, Math.min(100, Number(task.progress) || 0));
  return h("span.progress", {}, h("progress", { max: 100, value, "aria-label": `${value}% done` }), ` ${value}%`);
}

// What the task cost: its charge once it ended, what is held while it runs.
function charge(task) {
  if (task.charge_nano !== null && task.charge_nano !== undefined) return usd(task.charge_nano);
  if (ACTIVE.has(task.state) && task.hold_nano) return h("span.muted", { text: `${usd(task.hold_nano)} held` });
  return "—";
}

function size(bytes) {
  if (bytes === null || bytes === undefined) return "";
  if (bytes < 1024) return `${number(bytes)} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function taskLink(task) {
  return h("a.mono", { href: `/console/tasks?task=${encodeURIComponent(task.public_id)}`, text: task.public_id });
}

// Cancel after the operator agreed; then `done` redraws whatever showed the task.
function cancelButton(task, where, done) {
  return button(
    "Cancel",
    guarded(where, async () => {
      if (!confirm(`Cancel task ${task.public_id}? Its hold is released and it is charged nothing.`)) return;
      const ended = await api("POST", `/admin/tasks/${encodeURIComponent(task.public_id)}/cancel`);
      await done(ended);
    }),
    { class: "danger", "data-action": "cancel", "data-task": task.public_id },
  );
}

// One stored result, drawn as what it is.
function resultView(task, file) {
  const type = String(file.content_type || "").split(";")[0].trim().toLowerCase();
  const what = `${file.name} of task ${task.public_id}`;
  let media = null;
  let kind = "file";
  if (type.startsWith("image/")) {
    kind = "image";
    media = h("img", { src: file.url, alt: what, loading: "lazy" });
  } else if (type.startsWith("audio/")) {
    kind = "audio";
    media = h("audio", { src: file.url, controls: true, preload: "metadata", "aria-label": what });
  } else if (type.startsWith("video/")) {
    kind = "video";
    media = h("video", { src: file.url, controls: true, preload: "metadata", playsinline: true, "aria-label": what });
  }
  return h(
    "figure.result",
    { "data-result": file.name, "data-kind": kind },
    media,
    h(
      "figcaption",
      {},
      h("strong", { text: file.name }),
      h("span.muted", { text: ` ${type || "file"} · ${size(file.size)} · ` }),
      h("a", { href: file.url, download: `${task.public_id}-${file.name}`, text: "Download" }),
    ),
  );
}

function facts(rows) {
  return h(
    "dl.facts",
    {},
    rows.filter(([, value]) => value !== null && value !== undefined && value !== "").map(([term, value]) => [h("dt", { text: term }), h("dd", {}, value)]),
  );
}

function json(value) {
  return h("pre.json", { text: JSON.stringify(value, null, 2) });
}

// The result without the stored files' bookkeeping (shown above, as files).
function resultFields(result) {
  if (!result) return null;
  const { assets, ...rest } = result;
  return Object.keys(rest).length ? rest : null;
}

async function detail(root, taskId, keys, channels) {
  const status = h("div", { id: "status" });
  const body = h("div", { id: "task-detail" });
  let timer = null;

  async function show() {
    const task = await api("GET", `/admin/tasks/${encodeURIComponent(taskId)}`);
    const active = ACTIVE.has(task.state);
    const error = task.error ? `${task.error.code ? task.error.code + ": " : ""}${task.error.message || ""}` : "";
    const extra = resultFields(task.result);
    clear(
      body,
      h(
        "div.spread",
        {},
        h("h2.mono.task-id", { text: task.public_id }),
        h("div.actions", {}, active ? cancelButton(task, status, async (ended) => {
          status.replaceChildren(notice(`Task ${ended.public_id} is ${ended.state}.`, "ok"));
          await show();
        }) : null),
      ),
      h(
        "div.cards",
        {},
        h("div.card", { id: "task-state", "data-state": task.state }, h("div.card-title", { text: "State" }), h("div.card-value", {}, stateBadge(task))),
        h("div.card", { id: "task-progress", "data-progress": task.progress }, h("div.card-title", { text: "Progress" }), h("div.card-value", {}, progress(task))),
        h("div.card", { id: "task-charge", "data-nano": task.charge_nano ?? "" }, h("div.card-title", { text: active ? "Held" : "Charged" }), h("div.card-value", {}, charge(task))),
        h("div.card", {}, h("div.card-title", { text: "Model" }), h("div.card-value", { text: task.model })),
      ),
      error ? h("p.notice.error", { id: "task-error", text: error }) : null,
      facts([
        ["Family", `${task.family} · ${task.action}`],
        ["Key", h("a", { href: `/console/ledger?key_id=${task.key_id}`, text: keys.get(task.key_id) || `#${task.key_id}` })],
        ["Channel", task.channel_id ? channels.get(task.channel_id) || `#${task.channel_id}` : "—"],
        ["Upstream", task.upstream_id ? h("span.mono", { text: `${task.upstream_id}${task.upstream_status ? " (" + task.upstream_status + ")" : ""}` }) : "—"],
        ["Request", h("span.mono", { text: task.request_id })],
        ["Created", when(task.created_ms)],
        ["Submitted", when(task.submitted_ms)],
        ["Last polled", active ? when(task.polled_ms) : null],
        ["Finished", when(task.finished_ms)],
        ["Deadline", active ? when(task.deadline_ms) : null],
        ["Cancel asked", task.cancel_requested ? "yes" : null],
        ["Last poll error", task.last_error],
        ["Deleted by its key", task.deleted_ms ? when(task.deleted_ms) : null],
      ]),
      h("h2", { text: "Results" }),
      task.result_files.length
        ? h("div.results", { id: "task-results" }, task.result_files.map((file) => resultView(task, file)))
        : h("p.muted.empty", { id: "task-results", text: active ? "None yet: the task is still running." : "No stored results." }),
      extra ? h("details", {}, h("summary", { text: "Result fields" }), json(extra)) : null,
      h("details", {}, h("summary", { text: "What was asked" }), json(task.request)),
      task.events.length
        ? h(
            "details",
            {},
            h("summary", { text: `Webhook events (${task.events.length})` }),
            table(
              [
                ["Event", (e) => e.kind],
                ["State", (e) => badge(e.state, e.state === "delivered" ? "ok" : e.state === "failed" ? "err" : "info")],
                ["Attempts", (e) => number(e.attempts), { class: "num" }],
                ["To", (e) => h("span.mono", { text: e.url })],
                ["Last error", (e) => e.last_error || "—"],
              ],
              task.events,
            ),
          )
        : null,
    );
    // An active task is watched until it ends; one that ended is drawn once.
    clearTimeout(timer);
    if (active) timer = setTimeout(() => show().catch((e) => status.replaceChildren(notice(e.message, "error"))), REFRESH_MS);
  }

  clear(root, h("p", {}, h("a", { href: "/console/tasks", text: "← All tasks" })), status, body);
  await show();
}

async function list(root, keys, channels) {
  const query = params();
  const status = h("div", { id: "status" });
  const results = h("div", { id: "task-results" });
  const family = select("family", [["", "any family"]], "");
  const state = select("state", [["", "any state"], ...STATES.map((s) => [s, s])], query.get("state") || "");
  const key = select("key_id", [["", "any key"], ...[...keys].map(([id, name]) => [String(id), `${name} (#${id})`])], query.get("key_id") || "");
  const channel = select("channel_id", [["", "any channel"], ...[...channels].map(([id, name]) => [String(id), name])], query.get("channel_id") || "");
  const limit = Math.min(Math.max(Number(query.get("limit")) || PAGE, 1), 1000);
  let families = null;

  // Until the first page names the families, the family asked for is the address's.
  const filters = () => ({ family: families === null ? query.get("family") || "" : family.value, state: state.value, key_id: key.value, channel_id: channel.value });

  async function load(beforeId) {
    const wanted = filters();
    setParams({ ...wanted, limit: limit === PAGE ? "" : limit });
    const q = new URLSearchParams(Object.entries({ ...wanted, limit, before_id: beforeId || "" }).filter(([, v]) => v !== ""));
    const page = await api("GET", `/admin/tasks?${q}`);
    if (families === null) {
      // The families this gateway runs, known once the first page came.
      families = page.families;
      clear(family, h("option", { value: "" }, "any family"), families.map((name) => h("option", { value: name, selected: name === wanted.family }, name)));
    }
    const reload = () => load(beforeId);
    clear(
      results,
      table(
        [
          ["Created", (t) => when(t.created_ms), { class: "nowrap" }],
          ["Task", taskLink, { class: "task-id" }],
          ["Family", (t) => h("span", {}, t.family, h("div.muted", { text: t.action }))],
          ["Model", (t) => t.model],
          ["Key", (t) => keys.get(t.key_id) || `#${t.key_id}`],
          ["Channel", (t) => (t.channel_id ? channels.get(t.channel_id) || `#${t.channel_id}` : "—")],
          ["State", (t) => h("span", {}, stateBadge(t), t.error ? h("div.muted", { text: t.error.code || t.error.message }) : null)],
          ["Progress", progress, { class: "nowrap" }],
          ["Charge", charge, { class: "num" }],
          ["", (t) => (ACTIVE.has(t.state) ? cancelButton(t, status, async (ended) => {
            status.replaceChildren(notice(`Task ${ended.public_id} is ${ended.state}.`, "ok"));
            await reload();
          }) : null)],
        ],
        page.data,
        { empty: "No tasks match.", rowAttrs: (t) => ({ "data-task": t.public_id, "data-state": t.state }) },
      ),
      h(
        "div.pager",
        {},
        button("Newest", () => load(), { disabled: !beforeId }),
        button("Older →", () => load(page.next_before_id), { disabled: !page.next_before_id, id: "older" }),
        h("span.muted", { text: `${page.data.length} tasks${page.next_before_id ? ", more older" : ""}` }),
      ),
    );
  }

  const form = h(
    "form.panel.grid",
    {
      id: "task-filters",
      onsubmit: guarded(status, async (event) => {
        event.preventDefault();
        await load();
      }),
    },
    field("Family", family),
    field("State", state),
    field("Key", key),
    field("Channel", channel),
    h("div.actions", {}, h("button.primary", { type: "submit", text: "Filter" })),
  );
  clear(root, form, status, results);
  await load();
}

start(async (root) => {
  const [keys, channels] = await Promise.all([keyNames(), channelNames()]);
  const taskId = params().get("task");
  if (taskId) await detail(root, taskId, keys, channels);
  else await list(root, keys, channels);
});
