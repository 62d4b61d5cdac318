// Prices and groups: the operator's prices (for every channel or one), the shipped catalogue
// to override from, and group multipliers.
import { api, button, channelNames, clear, field, guarded, h, input, nanoToUsdText, notice, select, start, table, usd } from "../lib.js";

const per = (nano) => (nano === null || nano === undefined ? "—" : usd(nano));

function units(row) {
  const u = row.units || {};
  const parts = [];
  if (u.images) parts.push(`images: ${Object.entries(u.images).map(([k, v]) => `${k} ${usd(v)}`).join(", ")}`);
  if (u.audio_second) parts.push(`audio ${usd(u.audio_second)}/s`);
  if (u.speech_per_m_chars) parts.push(`speech ${usd(u.speech_per_m_chars)}/1M chars`);
  if (u.rerank_search) parts.push(`rerank ${usd(u.rerank_search)}/search`);
  return parts.join(" · ") || "—";
}

// What the form does not show but the row prices: kept as it is when the row is saved.
function carried(row) {
  const u = (row && row.units) || {};
  const usdOf = (table) => Object.fromEntries(Object.entries(table).map(([k, v]) => [k, nanoToUsdText(v)]));
  const body = {};
  if (row && row.cache_write_nano_per_m !== null && row.cache_write_nano_per_m !== undefined) body.cache_write_usd_per_m = nanoToUsdText(row.cache_write_nano_per_m);
  if (u.images) body.images_usd = usdOf(u.images);
  if (u.audio_second !== undefined) body.audio_usd_per_second = nanoToUsdText(u.audio_second);
  if (u.speech_per_m_chars !== undefined) body.speech_usd_per_m_chars = nanoToUsdText(u.speech_per_m_chars);
  if (u.rerank_search !== undefined) body.rerank_usd_per_search = nanoToUsdText(u.rerank_search);
  if (u.task_actions) body.task_actions_usd = usdOf(u.task_actions);
  return body;
}

function priceForm(where, channels, row, reload) {
  const r = row || { model: "", channel_id: 0 };
  const model = input("model", { value: r.model, required: true, list: "catalogue-models", maxlength: 128 });
  const channel = select("channel_id", [["0", "every channel"], ...[...channels].map(([id, name]) => [String(id), name])], String(r.channel_id || 0));
  const inputPrice = input("input_usd_per_m", { value: nanoToUsdText(r.input_nano_per_m), required: true, inputmode: "decimal" });
  const output = input("output_usd_per_m", { value: nanoToUsdText(r.output_nano_per_m), required: true, inputmode: "decimal" });
  const cached = input("cached_input_usd_per_m", { value: nanoToUsdText(r.cached_input_nano_per_m), placeholder: "the input price", inputmode: "decimal" });
  const perCall = input("per_call_usd", { value: r.per_call_nano ? nanoToUsdText(r.per_call_nano) : "", placeholder: "none", inputmode: "decimal" });
  const message = h("div");
  const save = guarded(message, async (event) => {
    event.preventDefault();
    const body = { ...carried(row), input_usd_per_m: inputPrice.value.trim(), output_usd_per_m: output.value.trim(), channel_id: Number(channel.value) };
    if (cached.value.trim()) body.cached_input_usd_per_m = cached.value.trim();
    if (perCall.value.trim()) body.per_call_usd = perCall.value.trim();
    await api("PUT", `/admin/prices/${encodeURIComponent(model.value.trim())}`, body);
    where.replaceChildren();
    await reload(`Price of “${model.value.trim()}” set.`);
  });
  clear(
    where,
    h(
      "form.panel",
      { id: "price-form", onsubmit: save },
      h("h2", { text: "Set a price (USD per 1M tokens)" }),
      h(
        "div.grid",
        {},
        field("Model", model),
        field("Channel", channel),
        field("Input", inputPrice),
        field("Output", output),
        field("Cached input", cached),
        field("Per call", perCall),
      ),
      message,
      h("div.actions", {}, h("button.primary", { type: "submit", id: "save-price", text: "Set price" }), button("Cancel", () => where.replaceChildren())),
    ),
  );
  model.focus();
}

function groupForm(where, reload) {
  const group = input("group", { required: true, maxlength: 64 });
  const multiplier = input("multiplier", { required: true, inputmode: "decimal", placeholder: "0.85" });
  const message = h("div");
  const save = guarded(message, async (event) => {
    event.preventDefault();
    await api("PUT", `/admin/groups/${encodeURIComponent(group.value.trim())}/multiplier`, { multiplier: multiplier.value.trim() });
    where.replaceChildren();
    await reload(`Group “${group.value.trim()}” pays ${multiplier.value.trim()} × list price.`);
  });
  clear(
    where,
    h(
      "form.panel",
      { onsubmit: save },
      h("div.grid", {}, field("Group", group), field("Multiplier", multiplier, "1 is list price; 0.85 a 15% discount.")),
      message,
      h("div.actions", {}, h("button.primary", { type: "submit", text: "Set multiplier" }), button("Cancel", () => where.replaceChildren())),
    ),
  );
}

start(async (root) => {
  const channels = await channelNames();
  const status = h("div", { id: "status" });
  const formSlot = h("div");
  const groupSlot = h("div");
  const prices = h("div");
  const groups = h("div");
  const catalogue = h("div");
  const filter = input("catalogue-filter", { placeholder: "Filter the catalogue, e.g. gpt-4o", type: "search" });
  let catalogueRows = [];
  const datalist = h("datalist", { id: "catalogue-models" });

  const priceColumns = (actions) => [
    ["Model", (r) => h("span.mono", { text: r.model }), { class: "nowrap" }],
    ["Channel", (r) => (r.channel_id ? channels.get(r.channel_id) || `#${r.channel_id}` : "every channel"), { class: "nowrap" }],
    ["Input /1M", (r) => per(r.input_nano_per_m), { class: "num" }],
    ["Output /1M", (r) => per(r.output_nano_per_m), { class: "num" }],
    ["Cached /1M", (r) => per(r.cached_input_nano_per_m), { class: "num" }],
    ["Per call", (r) => (r.per_call_nano ? usd(r.per_call_nano) : "—"), { class: "num" }],
    ["Units", units],
    ["", actions],
  ];

  function drawCatalogue() {
    const wanted = filter.value.trim().toLowerCase();
    // A short list until filtered: the catalogue has hundreds of models.
    const rows = catalogueRows.filter((r) => !wanted || r.model.toLowerCase().includes(wanted)).slice(0, wanted ? 200 : 25);
    clear(
      catalogue,
      table(priceColumns((r) => button("Override", () => priceForm(formSlot, channels, r, reload))), rows, { empty: "No model matches." }),
      catalogueRows.length > rows.length ? h("p.muted", { text: `${rows.length} of ${catalogueRows.length} shown; filter to find others.` }) : null,
    );
  }

  async function reload(message) {
    const [own, multipliers] = await Promise.all([api("GET", "/admin/prices"), api("GET", "/admin/groups")]);
    if (message) clear(status, notice(message, "ok"));
    clear(
      prices,
      table(
        priceColumns((r) =>
          h(
            "div.actions",
            {},
            button("Edit", () => priceForm(formSlot, channels, r, reload)),
            button("Delete", guarded(status, async () => {
              if (!confirm(`Remove the price of “${r.model}”? The catalogue's applies again, if it has one.`)) return;
              await api("DELETE", `/admin/prices/${encodeURIComponent(r.model)}?channel_id=${r.channel_id}`);
              await reload(`Price of “${r.model}” removed.`);
            }), { class: "danger" }),
          ),
        ),
        own.data,
        { empty: "No prices of your own: the catalogue's apply." },
      ),
    );
    clear(
      groups,
      table(
        [
          ["Group", (g) => g.group],
          ["Multiplier", (g) => `${g.multiplier} ×`, { class: "num" }],
          ["", (g) => button("Remove", guarded(status, async () => {
            await api("DELETE", `/admin/groups/${encodeURIComponent(g.group)}/multiplier`);
            await reload(`Group “${g.group}” pays list price again.`);
          }), { class: "danger" })],
        ],
        multipliers.data,
        { empty: "Every group pays list price." },
      ),
    );
  }

  catalogueRows = (await api("GET", "/admin/prices?catalogue=1")).data;
  datalist.append(...catalogueRows.map((r) => h("option", { value: r.model })));
  filter.addEventListener("input", drawCatalogue);
  await reload();
  drawCatalogue();
  clear(
    root,
    datalist,
    status,
    h("div.spread", {}, h("h2", { text: "Your prices" }), button("Set a price", () => priceForm(formSlot, channels, null, reload), { class: "primary", id: "set-price" })),
    formSlot,
    prices,
    h("div.spread", {}, h("h2", { text: "Group multipliers" }), button("Set a multiplier", () => groupForm(groupSlot, reload))),
    groupSlot,
    groups,
    h("h2", { text: "Catalogue (shipped list prices)" }),
    field("Filter", filter),
    catalogue,
  );
});
