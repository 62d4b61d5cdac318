// Channels: the list with live state, create and edit (type presets fill the base URL;
// the upstream key is write-only; "Fetch models" lists the upstream's own), test,
// enable and disable, delete.
import { api, badge, button, clear, field, guarded, h, input, notice, number, select, start, table, when } from "../lib.js";

let types = [];
let channels = [];

function listOf(text) {
  return [...new Set(String(text).split(/[\s,]+/).map((s) => s.trim()).filter(Boolean))];
}

function mappingOf(text) {
  const mapping = {};
  for (const line of String(text).split("\n")) {
    const [asked, sent] = line.split("=").map((s) => s && s.trim());
    if (asked && sent) mapping[asked] = sent;
  }
  return mapping;
}

function state(channel) {
  if (channel.enabled) return badge("enabled", "ok");
  const by = channel.disabled_by === "health" ? "health" : "operator";
  return h("span", {}, badge(`disabled by ${by}`, "err"), h("div.muted", { text: channel.disabled_reason || "" }));
}

function lastTest(channel) {
  const probe = channel.last_probe;
  if (!probe) return "—";
  return probe.ok
    ? h("span", {}, badge("ok", "ok"), ` ${number(probe.latency_ms)} ms`)
    : h("span", { title: probe.error || "" }, badge("failed", "err"), ` ${probe.error || ""}`);
}

function form(where, channel, reload) {
  const editing = Boolean(channel);
  const defaults = new Map(types.map((t) => [t.type, t.base_url || ""]));
  const current = channel || { type: "openai", group: "default", priority: 0, weight: 1, models: [], model_mapping: {}, enabled: true, options: {} };
  const typeSelect = select("type", types.map((t) => [t.type, t.type]), current.type, { disabled: editing });
  const baseUrl = input("base_url", { value: editing ? current.base_url : defaults.get(current.type), placeholder: defaults.get(current.type) || "https://…/v1" });
  typeSelect.addEventListener("change", () => {
    // A preset names its vendor's URL; keep one the operator typed themselves.
    const wasDefault = [...defaults.values()].includes(baseUrl.value) || !baseUrl.value;
    if (wasDefault) baseUrl.value = defaults.get(typeSelect.value) || "";
    baseUrl.placeholder = defaults.get(typeSelect.value) || "https://…/v1";
  });
  const name = input("name", { value: current.name, required: true, maxlength: 128 });
  const apiKey = input("api_key", {
    type: "password",
    autocomplete: "off",
    placeholder: editing ? "stored; leave empty to keep it" : "the upstream's API key",
    required: !editing,
  });
  const models = h("textarea", { name: "models", id: "f-models", value: current.models.join("\n"), placeholder: "one model per line" });
  const mapping = h("textarea", {
    name: "model_mapping",
    id: "f-model_mapping",
    value: Object.entries(current.model_mapping).map(([a, b]) => `${a}=${b}`).join("\n"),
    placeholder: "asked=sent upstream, one per line",
  });
  const group = input("group", { value: current.group });
  const priority = input("priority", { type: "number", value: current.priority });
  const weight = input("weight", { type: "number", min: 0, value: current.weight });
  const maxInflight = input("max_inflight", { type: "number", min: 1, value: current.options.max_inflight ?? "" });
  const enabled = input("enabled", { type: "checkbox", checked: current.enabled });
  const picker = h("div");
  const message = h("div");

  const fetchModels = guarded(message, async () => {
    const body = { type: typeSelect.value, base_url: baseUrl.value || undefined };
    if (apiKey.value) body.api_key = apiKey.value;
    if (editing) body.channel_id = channel.id;
    const found = await api("POST", "/admin/upstream-models", body);
    const chosen = new Set(listOf(models.value));
    clear(
      picker,
      h("p.muted", { text: `The upstream lists ${found.data.length} models; tick the ones this channel serves.` }),
      h(
        "div.picker",
        { id: "model-picker" },
        found.data.map((model) =>
          h(
            "label.check",
            {},
            h("input", {
              type: "checkbox",
              value: model,
              checked: chosen.has(model),
              onchange: (event) => {
                const now = new Set(listOf(models.value));
                if (event.target.checked) now.add(model);
                else now.delete(model);
                models.value = [...now].join("\n");
              },
            }),
            model,
          ),
        ),
      ),
    );
  });

  const save = guarded(message, async (event) => {
    event.preventDefault();
    const body = {
      name: name.value,
      base_url: baseUrl.value || undefined,
      models: listOf(models.value),
      model_mapping: mappingOf(mapping.value),
      group: group.value || "default",
      priority: Number(priority.value || 0),
      weight: Number(weight.value || 0),
    };
    if (maxInflight.value) body.max_inflight = Number(maxInflight.value);
    if (apiKey.value) body.api_key = apiKey.value;
    if (editing) {
      await api("PATCH", `/admin/channels/${channel.id}`, body);
    } else {
      body.type = typeSelect.value;
      body.enabled = enabled.checked;
      await api("POST", "/admin/channels", body);
    }
    where.replaceChildren();
    await reload(`Channel “${body.name}” ${editing ? "saved" : "added"}.`);
  });

  clear(
    where,
    h(
      "form.panel",
      { id: "channel-form", onsubmit: save },
      h("h2", { text: editing ? `Edit channel “${channel.name}”` : "Add a channel" }),
      h(
        "div.grid",
        {},
        field("Name", name),
        field("Type", typeSelect, editing ? "A channel's type is fixed." : "A preset fills in its vendor's URL."),
        field("Base URL", baseUrl),
        field("Upstream API key", apiKey, "Write-only: it is stored encrypted and never shown."),
        field("Group", group),
        field("Priority", priority, "Higher tiers are tried first."),
        field("Weight", weight),
        field("Max in flight", maxInflight),
        editing ? null : h("label.field.check", {}, enabled, h("span", { text: "Enabled" })),
      ),
      h(
        "div.grid",
        {},
        h("label.field.wide", {}, h("span", {}, "Models ", button("Fetch models", fetchModels, { id: "fetch-models", class: "link" })), models),
        h("div.field.wide", {}, picker),
        h("label.field.wide", {}, h("span", { text: "Model mapping" }), mapping),
      ),
      message,
      h(
        "div.actions",
        {},
        h("button.primary", { type: "submit", id: "save-channel", text: editing ? "Save" : "Add channel" }),
        button("Cancel", () => where.replaceChildren()),
      ),
    ),
  );
  name.focus();
}

start(async (root) => {
  const status = h("div", { id: "status" });
  const formSlot = h("div");
  const list = h("div");

  async function reload(message) {
    const [listed, typeList] = await Promise.all([api("GET", "/admin/channels"), api("GET", "/admin/channel-types")]);
    channels = listed.data;
    types = typeList.data;
    if (message) clear(status, notice(message, "ok"));
    clear(
      list,
      table(
        [
          ["Channel", (c) => h("div", {}, h("strong", { text: c.name }), h("div.muted.mono", { text: `#${c.id} · ${c.type}` }))],
          ["Group", (c) => c.group],
          ["Models", (c) => h("span", { title: c.models.join(", ") }, c.models.slice(0, 3).join(", ") + (c.models.length > 3 ? ` +${c.models.length - 3}` : ""))],
          ["Prio / weight", (c) => `${c.priority} / ${c.weight}`, { class: "num" }],
          ["State", state],
          ["Breaker", (c) => badge(c.live.breaker, c.live.breaker === "closed" ? "ok" : "err")],
          ["Cooldown", (c) => (c.live.cooldown_s > 0 ? `${c.live.cooldown_s.toFixed(0)} s` : "—"), { class: "num" }],
          ["In flight", (c) => number(c.live.inflight), { class: "num" }],
          ["Errors", (c) => `${(c.live.error_rate * 100).toFixed(1)}%`, { class: "num" }],
          ["p50", (c) => (c.live.p50_latency_ms === null ? "—" : `${number(c.live.p50_latency_ms)} ms`), { class: "num" }],
          ["Last test", (c) => h("div", {}, lastTest(c), h("div.muted", { text: c.last_probe ? when(c.last_probe.at * 1000) : "" }))],
          [
            "",
            (c) =>
              h(
                "div",
                {},
                h(
                  "div.actions",
                  {},
                  button("Test", guarded(status, async () => {
                    const result = await api("POST", `/admin/channels/${c.id}/test`);
                    const text = result.ok
                      ? `Channel “${c.name}”: ${result.model} answered in ${result.latency_ms} ms.`
                      : `Channel “${c.name}” failed its test: ${result.error}`;
                    await reload();
                    clear(status, notice(text, result.ok ? "ok" : "error"));
                  }), { "data-action": "test", "data-channel": c.name }),
                  button("Edit", () => form(formSlot, c, reload), { "data-action": "edit", "data-channel": c.name }),
                  button(c.enabled ? "Disable" : "Enable", guarded(status, async () => {
                    await api("PATCH", `/admin/channels/${c.id}`, { enabled: !c.enabled });
                    await reload(`Channel “${c.name}” ${c.enabled ? "disabled" : "enabled"}.`);
                  }), { "data-action": "toggle", "data-channel": c.name }),
                  button("Delete", guarded(status, async () => {
                    if (!confirm(`Delete channel “${c.name}”? Calls stop going to it at once.`)) return;
                    await api("DELETE", `/admin/channels/${c.id}`);
                    await reload(`Channel “${c.name}” deleted.`);
                  }), { class: "danger", "data-action": "delete", "data-channel": c.name }),
                ),
              ),
          ],
        ],
        channels,
        { empty: "No channels yet.", rowAttrs: (c) => ({ "data-channel": c.name }) },
      ),
    );
  }

  await reload();
  clear(
    root,
    h("div.spread", {}, h("p.muted", { text: "Live state is this gateway process's own view." }), button("Add channel", () => form(formSlot, null, reload), { class: "primary", id: "add-channel" })),
    status,
    formSlot,
    list,
  );
});
