// Batches of every key: the list, filtered by status and key and a page at a time; one
// batch's status, its lines' progress (completed and failed of total), times, endpoint,
// models, token usage, the charge and errors, its input, output and error files to download;
// cancelling one in progress. The files come from /admin/files/{id}/content, which serves
// them to the operator's session (/v1/files/{id}/content answers only the key that owns
// them).
import { api, badge, button, clear, field, guarded, h, keyNames, notice, number, params, select, setParams, start, table, usd, whenSeconds } from "../lib.js";

const PAGE = 50; // rows a page, unless the address asks (?limit=, 1 to 1000)
const STATUSES = ["validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled"];
const ENDED = new Set(["completed", "failed", "expired", "cancelled"]);
const CANCELLABLE = new Set(["validating", "in_progress"]);
const REFRESH_MS = 2000;

function statusBadge(batch) {
  const kind = { completed: "ok", failed: "err", expired: "err", cancelled: "warn", cancelling: "warn" }[batch.status] || "info";
  return badge(batch.status, kind);
}

function counts(batch) {
  const c = batch.request_counts || {};
  return { total: c.total || 0, completed: c.completed || 0, failed: c.failed || 0 };
}

// Lines answered (completed or failed) of all the batch's lines: as a count in the list,
// as a share on the batch's own page (its counts are beside it).
function progress(batch, share = false) {
  const { total, completed, failed } = counts(batch);
  const done = completed + failed;
  const percent = total ? Math.floor((done * 100) / total) : 0;
  return h(
    "span.progress",
    {},
    h("progress", { max: Math.max(total, 1), value: total ? done : 0, "aria-label": `${done} of ${total} lines answered` }),
    share ? ` ${percent}%` : ` ${number(done)} / ${number(total)}`,
    !share && failed ? h("span.muted", { text: ` (${number(failed)} failed)` }) : null,
  );
}

function batchLink(batch) {
  return h("a.mono", { href: `/console/batches?batch=${encodeURIComponent(batch.id)}`, text: batch.id });
}

function fileLink(fileId, what) {
  if (!fileId) return null;
  return h("a.mono", { href: `/admin/files/${encodeURIComponent(fileId)}/content`, download: `${fileId}.jsonl`, "data-file": what, text: fileId });
}

// Cancel after the operator agreed; then `done` redraws whatever showed the batch.
function cancelButton(batch, where, done) {
  return button(
    "Cancel",
    guarded(where, async () => {
      if (!confirm(`Cancel batch ${batch.id}? Lines not yet run are not run; those answered are kept and charged.`)) return;
      const cancelled = await api("POST", `/admin/batches/${encodeURIComponent(batch.id)}/cancel`);
      await done(cancelled);
    }),
    { class: "danger", "data-action": "cancel", "data-batch": batch.id },
  );
}

function facts(rows) {
  return h(
    "dl.facts",
    {},
    rows.filter(([, value]) => value !== null && value !== undefined && value !== "").map(([term, value]) => [h("dt", { text: term }), h("dd", {}, value)]),
  );
}

function tokens(usage) {
  return usage ? `${number(usage.input_tokens)} · ${number(usage.output_tokens)}` : "—";
}

// The models the lines ask for, each with its number of lines.
function models(list) {
  if (!list?.length) return null;
  return h(
    "span",
    { id: "batch-models" },
    list.map((m, i) => [i ? ", " : "", h("span", { "data-model": m.model, "data-lines": m.lines }, h("span.mono", { text: m.model }), ` (${number(m.lines)} ${m.lines === 1 ? "line" : "lines"})`)]),
  );
}

async function detail(root, batchId, keys) {
  const status = h("div", { id: "status" });
  const body = h("div", { id: "batch-detail" });
  let timer = null;

  async function show() {
    const batch = await api("GET", `/admin/batches/${encodeURIComponent(batchId)}`);
    const active = !ENDED.has(batch.status);
    const { total, completed, failed } = counts(batch);
    const errors = batch.errors?.data || [];
    clear(
      body,
      h(
        "div.spread",
        {},
        h("h2.mono.task-id", { text: batch.id }),
        h("div.actions", {}, CANCELLABLE.has(batch.status) ? cancelButton(batch, status, async (cancelled) => {
          status.replaceChildren(notice(`Batch ${cancelled.id} is ${cancelled.status}.`, "ok"));
          await show();
        }) : null),
      ),
      h(
        "div.cards",
        {},
        h("div.card", { id: "batch-status", "data-status": batch.status }, h("div.card-title", { text: "Status" }), h("div.card-value", {}, statusBadge(batch))),
        h(
          "div.card",
          { id: "batch-progress", "data-total": total, "data-completed": completed, "data-failed": failed },
          h("div.card-title", { text: "Lines answered" }),
          h("div.card-value", {}, progress(batch, true)),
        ),
        h("div.card", { id: "batch-counts" }, h("div.card-title", { text: "Completed · failed · total" }), h("div.card-value", { text: `${number(completed)} · ${number(failed)} · ${number(total)}` })),
        h("div.card", { id: "batch-tokens" }, h("div.card-title", { text: "Tokens in · out" }), h("div.card-value", { text: tokens(batch.usage) })),
        h("div.card", { id: "batch-charged" }, h("div.card-title", { text: "Charged" }), h("div.card-value", { text: usd(batch.charged_nano ?? 0) })),
      ),
      errors.length ? h("p.notice.error", { id: "batch-error", text: `The input file was refused: ${errors.length} ${errors.length === 1 ? "error" : "errors"}.` }) : null,
      facts([
        ["Endpoint", h("span.mono", { id: "batch-endpoint", text: batch.endpoint })],
        ["Models", models(batch.models)],
        ["Key", h("a", { href: `/console/ledger?key_id=${batch.key_id}`, text: keys.get(batch.key_id) || `#${batch.key_id}` })],
        ["Input file", fileLink(batch.input_file_id, "input")],
        ["Output file", fileLink(batch.output_file_id, "output") || (active ? "not yet written" : "—")],
        ["Error file", fileLink(batch.error_file_id, "error") || (active ? "not yet written" : "—")],
        ["Cached tokens", batch.usage?.input_tokens_details?.cached_tokens ? number(batch.usage.input_tokens_details.cached_tokens) : null],
        ["Window", batch.completion_window],
        ["Created", whenSeconds(batch.created_at)],
        ["In progress", batch.in_progress_at ? whenSeconds(batch.in_progress_at) : null],
        ["Finalizing", batch.finalizing_at ? whenSeconds(batch.finalizing_at) : null],
        ["Completed", batch.completed_at ? whenSeconds(batch.completed_at) : null],
        ["Failed", batch.failed_at ? whenSeconds(batch.failed_at) : null],
        ["Cancelling", batch.cancelling_at ? whenSeconds(batch.cancelling_at) : null],
        ["Cancelled", batch.cancelled_at ? whenSeconds(batch.cancelled_at) : null],
        ["Expired", batch.expired_at ? whenSeconds(batch.expired_at) : null],
        ["Expires", active ? whenSeconds(batch.expires_at) : null],
      ]),
      errors.length
        ? h(
            "section",
            { id: "batch-errors" },
            h("h2", { text: "Errors" }),
            table(
              [
                ["Line", (e) => (e.line === null || e.line === undefined ? "—" : number(e.line)), { class: "num" }],
                ["Code", (e) => h("span.mono", { text: e.code || "" })],
                ["Param", (e) => e.param || "—"],
                ["Message", (e) => e.message || ""],
              ],
              errors,
            ),
          )
        : null,
      batch.metadata && Object.keys(batch.metadata).length
        ? h("details", {}, h("summary", { text: "Metadata" }), h("pre.json", { text: JSON.stringify(batch.metadata, null, 2) }))
        : null,
    );
    // A batch still running is watched until it ends; one that ended is drawn once.
    clearTimeout(timer);
    if (active) timer = setTimeout(() => show().catch((e) => status.replaceChildren(notice(e.message, "error"))), REFRESH_MS);
  }

  clear(root, h("p", {}, h("a", { href: "/console/batches", text: "← All batches" })), status, body);
  await show();
}

async function list(root, keys) {
  const query = params();
  const status = h("div", { id: "status" });
  const results = h("div", { id: "batch-results" });
  const state = select("status", [["", "any status"], ...STATUSES.map((s) => [s, s])], query.get("status") || "");
  const key = select("key_id", [["", "any key"], ...[...keys].map(([id, name]) => [String(id), `${name} (#${id})`])], query.get("key_id") || "");
  const limit = Math.min(Math.max(Number(query.get("limit")) || PAGE, 1), 1000);

  async function load(beforeId) {
    const wanted = { status: state.value, key_id: key.value };
    setParams({ ...wanted, limit: limit === PAGE ? "" : limit });
    // One row more than shown says whether older ones follow (the API's cap is 1000).
    const asked = Math.min(limit + 1, 1000);
    const q = new URLSearchParams(Object.entries({ ...wanted, limit: asked, before_id: beforeId || "" }).filter(([, v]) => v !== ""));
    const answer = await api("GET", `/admin/batches?${q}`);
    const rows = answer.data.slice(0, limit);
    const more = answer.data.length > limit || (asked === limit && rows.length === limit);
    const older = more ? rows[rows.length - 1].row_id : null;
    const reload = () => load(beforeId);
    clear(
      results,
      table(
        [
          ["Created", (b) => whenSeconds(b.created_at), { class: "nowrap" }],
          ["Batch", batchLink, { class: "task-id" }],
          ["Endpoint", (b) => h("span.mono", { text: b.endpoint })],
          ["Key", (b) => keys.get(b.key_id) || `#${b.key_id}`],
          ["Status", (b) => h("span", {}, statusBadge(b), b.errors?.data?.length ? h("div.muted", { text: b.errors.data[0].code || b.errors.data[0].message }) : null)],
          ["Lines answered", (b) => progress(b), { class: "nowrap" }],
          ["", (b) => (CANCELLABLE.has(b.status) ? cancelButton(b, status, async (cancelled) => {
            status.replaceChildren(notice(`Batch ${cancelled.id} is ${cancelled.status}.`, "ok"));
            await reload();
          }) : null)],
        ],
        rows,
        { empty: "No batches match.", rowAttrs: (b) => ({ "data-batch": b.id, "data-status": b.status }) },
      ),
      h(
        "div.pager",
        {},
        button("Newest", () => load(), { disabled: !beforeId }),
        button("Older →", () => load(older), { disabled: !older, id: "older" }),
        h("span.muted", { text: `${rows.length} batches${older ? ", more older" : ""}` }),
      ),
    );
  }

  const form = h(
    "form.panel.grid",
    {
      id: "batch-filters",
      onsubmit: guarded(status, async (event) => {
        event.preventDefault();
        await load();
      }),
    },
    field("Status", state),
    field("Key", key),
    h("div.actions", {}, h("button.primary", { type: "submit", text: "Filter" })),
  );
  clear(root, form, status, results);
  await load();
}

start(async (root) => {
  const keys = await keyNames();
  const batchId = params().get("batch");
  if (batchId) await detail(root, batchId, keys);
  else await list(root, keys);
});
