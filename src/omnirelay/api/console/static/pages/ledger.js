// A key's ledger: every charge, newest first a page at a time, and the balance they make;
// the key's spend must equal the ledger's total (the books balance).
import { api, badge, button, card, clear, field, h, isOperator, keyNames, ownKeyId, params, select, setParams, start, table, usd, when } from "../lib.js";

const PAGE = 100;

start(async (root) => {
  const keys = await keyNames();
  let keyId = isOperator ? Number(params().get("key_id")) || null : ownKeyId;
  const picker = isOperator
    ? select("key_id", [["", "pick a key"], ...[...keys].map(([id, name]) => [String(id), `${name} (#${id})`])], keyId ?? "", {
        onchange: (event) => {
          keyId = Number(event.target.value) || null;
          setParams({ key_id: keyId });
          show();
        },
      })
    : null;
  const body = h("div");

  async function show(after) {
    if (!keyId) {
      clear(body, h("p.muted", { text: "Pick a key to see its ledger." }));
      return;
    }
    const q = new URLSearchParams({ key_id: keyId, limit: PAGE });
    if (after) q.set("after", after);
    const [ledger, key] = await Promise.all([api("GET", `/admin/ledger?${q}`), api("GET", `/admin/keys/${keyId}`)]);
    const balanced = ledger.total_nano === ledger.key_used_nano;
    clear(
      body,
      h(
        "div.cards",
        {},
        card("Ledger total", usd(ledger.total_nano), { id: "ledger-total", "data-nano": ledger.total_nano }),
        card("Key's spend", usd(ledger.key_used_nano), { id: "ledger-used", "data-nano": ledger.key_used_nano }),
        card("Quota", key.quota_nano === null ? "unlimited" : usd(key.quota_nano)),
        card("Balance", key.quota_nano === null ? "unlimited" : usd(key.quota_nano - ledger.key_used_nano), { id: "ledger-balance" }),
      ),
      h("p", {}, balanced ? badge("the books balance", "ok") : badge("calls not yet settled may differ", "warn"), key.deleted_at ? [" ", badge("key deleted", "err")] : null),
      ledger.open_holds.length
        ? h("div", {}, h("h2", { text: "Calls in flight (holds)" }), table([["Request", (o) => h("span.mono", { text: o.request_id })], ["Held", (o) => usd(o.amount_nano), { class: "num" }], ["Cost so far", (o) => usd(o.checkpoint_nano), { class: "num" }]], ledger.open_holds))
        : null,
      h("h2", { text: "Charges" }),
      table(
        [
          ["Time", (e) => when(e.created_ms), { class: "nowrap" }],
          ["Request", (e) => h("a.mono", { href: `/console/logs?key_id=${keyId}`, text: e.request_id })],
          ["Kind", (e) => (e.kind === "charge" ? e.kind : badge(e.kind, "warn"))],
          ["Amount", (e) => usd(e.amount_nano), { class: "num" }],
        ],
        ledger.entries,
        { empty: "No charges yet.", rowAttrs: (e) => ({ "data-amount": e.amount_nano }) },
      ),
      h(
        "div.pager",
        {},
        button("Newest", () => show(), { disabled: !after }),
        button("Older →", () => show(ledger.next), { disabled: !ledger.next }),
      ),
    );
  }

  clear(root, picker ? field("Key", picker) : null, body);
  await show();
});
