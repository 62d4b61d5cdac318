// Keys: the list with spend, quota, budget and limits; create (the secret shown once, with a
// copy button), edit, enable and disable, delete (a deleted key is kept, marked deleted).
import { api, badge, button, clear, field, guarded, h, input, nanoToUsdText, notice, number, params, select, setParams, start, table, usd, whenSeconds } from "../lib.js";

const PERIODS = [
  ["", "no budget"],
  ["day", "per day"],
  ["week", "per week"],
  ["month", "per month"],
];

function csv(text) {
  return [...new Set(String(text).split(/[\s,]+/).map((s) => s.trim()).filter(Boolean))];
}

function limits(key) {
  const parts = [];
  if (key.budget_nano !== null) parts.push(`${usd(key.budget_nano)}/${key.budget_period}`);
  if (key.rpm) parts.push(`${number(key.rpm)} rpm`);
  if (key.tpm) parts.push(`${number(key.tpm)} tpm`);
  if (key.max_concurrency) parts.push(`${number(key.max_concurrency)} at once`);
  if (key.allowed_ips) parts.push(`IPs ${key.allowed_ips.join(", ")}`);
  return parts.length ? parts.join(" · ") : "—";
}

function expiryDay(key) {
  return key.expires_at ? new Date(key.expires_at * 1000).toISOString().slice(0, 10) : "";
}

function form(where, key, reload, secretSlot) {
  const editing = Boolean(key);
  const k = key || { name: "", group: "default", quota_nano: null, models: null, budget_nano: null, budget_period: null };
  const name = input("name", { value: k.name, required: true, maxlength: 128 });
  const group = input("group", { value: k.group });
  const quota = input("quota_usd", { value: nanoToUsdText(k.quota_nano), placeholder: "unlimited", inputmode: "decimal" });
  const expires = input("expires", { type: "date", value: editing ? expiryDay(k) : "" });
  const models = input("models", { value: (k.models || []).join(", "), placeholder: "any model" });
  const budget = input("budget_usd", { value: nanoToUsdText(k.budget_nano), placeholder: "none", inputmode: "decimal" });
  const period = select("budget_period", PERIODS, k.budget_period || "");
  const rpm = input("rpm", { type: "number", min: 1, value: k.rpm ?? "" });
  const tpm = input("tpm", { type: "number", min: 1, value: k.tpm ?? "" });
  const concurrency = input("max_concurrency", { type: "number", min: 1, value: k.max_concurrency ?? "" });
  const ips = input("allowed_ips", { value: (k.allowed_ips || []).join(", "), placeholder: "any address" });
  const message = h("div");

  const number_ = (el) => (el.value === "" ? null : Number(el.value));
  const save = guarded(message, async (event) => {
    event.preventDefault();
    const limitFields = {
      budget_usd: budget.value.trim() || null,
      budget_period: period.value || null,
      rpm: number_(rpm),
      tpm: number_(tpm),
      max_concurrency: number_(concurrency),
      allowed_ips: ips.value.trim() ? csv(ips.value) : null,
    };
    const body = { name: name.value, group: group.value || "default" };
    if (editing) {
      // Blank means none: no quota, no expiry, any model.
      if (quota.value.trim()) body.quota_usd = quota.value.trim();
      else body.unlimited = true;
      // An expiry left as it was is not sent: one set to the second (through the API)
      // would otherwise move to the end of its day.
      if (expires.value !== expiryDay(k)) {
        if (expires.value) body.expires = expires.value;
        else body.never_expires = true;
      }
      if (models.value.trim()) body.models = csv(models.value);
      else body.all_models = true;
      body.limits = limitFields;
      await api("PATCH", `/admin/keys/${key.id}`, body);
      where.replaceChildren();
      await reload(`Key “${body.name}” saved.`);
      return;
    }
    if (quota.value.trim()) body.quota_usd = quota.value.trim();
    if (expires.value) body.expires = expires.value;
    if (models.value.trim()) body.models = csv(models.value);
    body.limits = Object.fromEntries(Object.entries(limitFields).filter(([, v]) => v !== null));
    const created = await api("POST", "/admin/keys", body);
    where.replaceChildren();
    const code = h("code", { id: "new-key-secret", text: created.key });
    const copied = h("span.muted");
    clear(
      secretSlot,
      h(
        "div.secret",
        { role: "status" },
        h("strong", { text: `Key “${created.name}”:` }),
        code,
        button("Copy", async () => {
          try {
            await navigator.clipboard.writeText(created.key);
            copied.textContent = "Copied.";
          } catch {
            // No clipboard (an insecure origin): select the text so Ctrl+C copies it.
            getSelection().selectAllChildren(code);
            copied.textContent = "Selected: press Ctrl+C.";
          }
        }, { id: "copy-secret" }),
        copied,
        button("Done", () => secretSlot.replaceChildren(), { id: "dismiss-secret" }),
      ),
      h("p.muted", { text: "This is the only time the key is shown: only its hash is stored. Copy it now." }),
    );
    await reload();
  });

  clear(
    where,
    h(
      "form.panel",
      { id: "key-form", onsubmit: save },
      h("h2", { text: editing ? `Edit key “${k.name}”` : "Create a key" }),
      h(
        "div.grid",
        {},
        field("Name", name),
        field("Group", group),
        field("Quota (USD)", quota, "All-time; blank: unlimited."),
        field("Expires (end of day, UTC)", expires),
        field("Models", models, "Comma-separated allowlist; blank: any."),
        field("Budget (USD)", budget),
        field("Budget period", period),
        field("Requests per minute", rpm),
        field("Tokens per minute", tpm),
        field("Calls at once", concurrency),
        field("Allowed networks (CIDR)", ips),
      ),
      message,
      h(
        "div.actions",
        {},
        h("button.primary", { type: "submit", id: "save-key", text: editing ? "Save" : "Create key" }),
        button("Cancel", () => where.replaceChildren()),
      ),
    ),
  );
  name.focus();
}

start(async (root) => {
  const showDeleted = params().get("deleted") === "1";
  const status = h("div", { id: "status" });
  const secretSlot = h("div", { id: "secret-slot" });
  const formSlot = h("div");
  const list = h("div");

  async function reload(message) {
    const keys = (await api("GET", `/admin/keys${showDeleted ? "?include_deleted=1" : ""}`)).data;
    if (message) clear(status, notice(message, "ok"));
    clear(
      list,
      table(
        [
          ["Key", (k) => h("div", {}, h("strong", { text: k.name }), h("div.muted.mono", { text: `#${k.id} · ${k.key_hint}` }))],
          ["Group", (k) => k.group],
          ["State", (k) => (k.deleted_at ? badge(`deleted ${whenSeconds(k.deleted_at)}`, "err") : k.enabled ? badge("enabled", "ok") : badge("disabled", "warn"))],
          ["Spent", (k) => usd(k.used_nano), { class: "num" }],
          ["Quota", (k) => (k.quota_nano === null ? "unlimited" : usd(k.quota_nano)), { class: "num" }],
          ["Remaining", (k) => (k.quota_nano === null ? "—" : usd(k.quota_nano - k.used_nano)), { class: "num" }],
          ["Budget and limits", limits],
          ["Models", (k) => (k.models ? k.models.join(", ") : "any")],
          ["Expires", (k) => (k.expires_at ? whenSeconds(k.expires_at) : "never")],
          [
            "",
            (k) =>
              h(
                "div.actions",
                {},
                h("a.button", { href: `/console/ledger?key_id=${k.id}`, text: "Ledger" }),
                h("a.button", { href: `/console/logs?key_id=${k.id}`, text: "Logs" }),
                k.deleted_at
                  ? null
                  : [
                      button("Edit", () => form(formSlot, k, reload, secretSlot), { "data-action": "edit", "data-key": k.name }),
                      button(k.enabled ? "Disable" : "Enable", guarded(status, async () => {
                        await api("PATCH", `/admin/keys/${k.id}`, { enabled: !k.enabled });
                        await reload(`Key “${k.name}” ${k.enabled ? "disabled" : "enabled"}.`);
                      }), { "data-action": "toggle", "data-key": k.name }),
                      button("Delete", guarded(status, async () => {
                        if (!confirm(`Delete key “${k.name}”? It stops working at once; its ledger and logs are kept.`)) return;
                        await api("DELETE", `/admin/keys/${k.id}`);
                        await reload(`Key “${k.name}” deleted.`);
                      }), { class: "danger", "data-action": "delete", "data-key": k.name }),
                    ],
              ),
          ],
        ],
        keys,
        { empty: "No keys yet.", rowAttrs: (k) => ({ "data-key": k.name, class: k.deleted_at ? "deleted" : undefined }) },
      ),
    );
  }

  const toggle = h("input", {
    type: "checkbox",
    id: "show-deleted",
    checked: showDeleted,
    onchange: (event) => {
      setParams({ deleted: event.target.checked ? "1" : "" });
      location.reload();
    },
  });
  await reload();
  clear(
    root,
    h(
      "div.spread",
      {},
      h("label.check.row", {}, toggle, "Show deleted keys"),
      button("Create key", () => form(formSlot, null, reload, secretSlot), { class: "primary", id: "create-key" }),
    ),
    status,
    secretSlot,
    formSlot,
    list,
  );
});
