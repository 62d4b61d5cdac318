// The operator's dashboard: spend and calls over time, by model, key and channel, from the
// daily aggregate and the ledger; live channel health as this process sees it.
import { api, badge, channelNames, clear, field, h, keyNames, number, params, section, select, setParams, start, table } from "../lib.js";
import { RANGES, usageView } from "../usage_view.js";

function health(channels) {
  return table(
    [
      ["Channel", (c) => c.name],
      ["State", (c) => (c.enabled ? badge("enabled", "ok") : badge("disabled", "err"))],
      ["Breaker", (c) => badge(c.live.breaker, c.live.breaker === "closed" ? "ok" : "err")],
      ["Error rate", (c) => `${(c.live.error_rate * 100).toFixed(1)}% of ${number(c.live.window_calls)}`, { class: "num" }],
      ["p50", (c) => (c.live.p50_latency_ms === null ? "—" : `${number(c.live.p50_latency_ms)} ms`), { class: "num" }],
      ["p95", (c) => (c.live.p95_latency_ms === null ? "—" : `${number(c.live.p95_latency_ms)} ms`), { class: "num" }],
      ["In flight", (c) => number(c.live.inflight), { class: "num" }],
      ["Cooldown", (c) => (c.live.cooldown_s > 0 ? `${c.live.cooldown_s.toFixed(0)} s` : "—"), { class: "num" }],
    ],
    channels,
    { empty: "No channels yet: add one on the Channels page." },
  );
}

start(async (root) => {
  const days = Number(params().get("days")) || 30;
  const [keys, channels, channelList] = await Promise.all([
    keyNames(),
    channelNames(),
    api("GET", "/admin/channels"),
  ]);
  const picker = select("days", RANGES, days, {
    onchange: (event) => {
      setParams({ days: event.target.value });
      location.reload();
    },
  });
  const view = await usageView({ days, groups: ["model", "key", "channel"], names: { key: keys, channel: channels } });
  clear(
    root,
    h("div.spread", {}, field("Period", picker), h("p.muted", { text: "Days are UTC; money is exact to the nano-dollar." })),
    view,
    section("Channel health (this gateway process, last calls)", health(channelList.data)),
  );
});
