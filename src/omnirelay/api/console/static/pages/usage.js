// A key holder's home: the key's balance and limits, and its spend over time.
import { api, card, clear, field, h, number, ownKeyId, params, section, select, setParams, start, usd, whenSeconds } from "../lib.js";
import { RANGES, usageView } from "../usage_view.js";

start(async (root) => {
  const days = Number(params().get("days")) || 30;
  const key = await api("GET", `/admin/keys/${ownKeyId}`);
  const remaining = key.quota_nano === null ? null : key.quota_nano - key.used_nano;
  const picker = select("days", RANGES, days, {
    onchange: (event) => {
      setParams({ days: event.target.value });
      location.reload();
    },
  });
  const limits = [
    key.budget_nano !== null ? `budget ${usd(key.budget_nano)} per ${key.budget_period}` : null,
    key.rpm ? `${number(key.rpm)} requests/min` : null,
    key.tpm ? `${number(key.tpm)} tokens/min` : null,
    key.max_concurrency ? `${number(key.max_concurrency)} at once` : null,
    key.allowed_ips ? `from ${key.allowed_ips.join(", ")}` : null,
  ].filter(Boolean);
  clear(
    root,
    h("p.muted", {}, `Key “${key.name}” (${key.key_hint}), group ${key.group}. `, key.enabled ? "Enabled." : "Disabled: its calls are refused."),
    h(
      "div.cards",
      {},
      card("Used, all time", usd(key.used_nano), { id: "key-used", "data-nano": key.used_nano }),
      card("Quota", key.quota_nano === null ? "unlimited" : usd(key.quota_nano)),
      card("Remaining", remaining === null ? "unlimited" : usd(remaining), { id: "key-remaining" }),
      card("Expires", key.expires_at ? whenSeconds(key.expires_at) : "never"),
    ),
    section("Limits", h("p", { text: limits.length ? limits.join(" · ") : "No budget or rate limits." }), key.models ? h("p.muted", { text: `Models: ${key.models.join(", ")}` }) : null),
    h("div.spread", {}, field("Period", picker), h("a", { href: "/console/ledger", text: "Every charge, in the ledger →" })),
    await usageView({ days, keyId: ownKeyId, groups: ["model"] }),
  );
});
