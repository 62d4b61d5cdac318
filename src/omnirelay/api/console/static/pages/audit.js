// The audit log: who changed which channel, key, price or group, when and from where —
// from the console, the CLI, the admin API or the gateway itself.
import { api, badge, button, clear, field, h, params, select, setParams, start, table, when } from "../lib.js";

const ENTITIES = [["", "anything"], ["channel", "channels"], ["key", "keys"], ["price", "prices"], ["group", "groups"], ["session", "console sign-ins"]];
const SOURCES = [["", "anywhere"], ["console", "console"], ["api", "admin API"], ["cli", "command line"], ["gateway", "the gateway"]];

function detail(entry) {
  const text = JSON.stringify(entry.detail);
  return text === "{}" ? "" : h("code", { text });
}

start(async (root) => {
  const query = params();
  const entity = select("entity", ENTITIES, query.get("entity") || "");
  const source = select("source", SOURCES, query.get("source") || "");
  const results = h("div", { id: "audit-results" });

  async function load(beforeId) {
    setParams({ entity: entity.value, source: source.value });
    const q = new URLSearchParams({ limit: 100 });
    if (entity.value) q.set("entity", entity.value);
    if (source.value) q.set("source", source.value);
    if (beforeId) q.set("before_id", beforeId);
    const page = await api("GET", `/admin/audit?${q}`);
    clear(
      results,
      table(
        [
          ["Time", (e) => when(e.created_ms), { class: "nowrap" }],
          ["From", (e) => badge(e.source, e.source === "gateway" ? "warn" : "info")],
          ["Who", (e) => h("span", {}, e.actor, e.address ? h("div.muted.mono", { text: e.address }) : null)],
          ["Action", (e) => h("strong", { text: e.action })],
          ["What", (e) => `${e.entity} ${e.entity_id}`],
          ["Detail", detail],
        ],
        page.data,
        { empty: "No changes recorded yet.", rowAttrs: (e) => ({ "data-action": e.action, "data-entity": `${e.entity}:${e.entity_id}`, "data-source": e.source }) },
      ),
      h("div.pager", {}, button("Newest", () => load(), { disabled: !beforeId }), button("Older →", () => load(page.next_before_id), { disabled: !page.next_before_id })),
    );
  }

  entity.addEventListener("change", () => load());
  source.addEventListener("change", () => load());
  clear(root, h("div.row", {}, field("About", entity), field("From", source)), results);
  await load();
});
