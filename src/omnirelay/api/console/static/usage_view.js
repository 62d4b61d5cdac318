// The spend charts and breakdowns that the operator's dashboard and a key holder's usage
// page share: daily totals from /admin/usage, hourly charges from /admin/usage/hourly.
import { api, barChart, card, countTick, everyDay, h, isoDay, number, section, shortUsd, table, usd } from "./lib.js";

export const RANGES = [
  [7, "7 days"],
  [30, "30 days"],
  [90, "90 days"],
  [365, "1 year"],
];

export function range(days) {
  const end = new Date();
  end.setUTCDate(end.getUTCDate() + 1);
  const start = new Date(end);
  start.setUTCDate(start.getUTCDate() - days);
  return { start: isoDay(start), end: isoDay(end) };
}

function query(base, extra) {
  const q = new URLSearchParams({ ...base, ...extra });
  for (const [name, value] of [...q]) if (value === "" || value === "null") q.delete(name);
  return q.toString();
}

// The totals, the daily and hourly charts, and the tables by model (and key, channel).
export async function usageView({ days, keyId = null, groups = ["model"], names = {} }) {
  const { start, end } = range(days);
  const base = { start_date: start, end_date: end, key_id: keyId ?? "" };
  const [total, daily, hourly, ...grouped] = await Promise.all([
    api("GET", "/admin/usage?" + query(base, {})),
    api("GET", "/admin/usage?" + query(base, { group_by: "day" })),
    api("GET", "/admin/usage/hourly?" + query({ hours: 48, key_id: keyId ?? "" }, {})),
    ...groups.map((group) => api("GET", "/admin/usage?" + query(base, { group_by: group, limit: 1000 }))),
  ]);
  const sum = total.data[0] || { requests: 0, cost_nano: 0, prompt_tokens: 0, completion_tokens: 0 };
  const perDay = everyDay(start, end, daily.data);
  const spendChart = barChart(
    perDay.map((row) => ({ label: row.day.slice(5), value: row.cost_nano, title: `${row.day}: ${usd(row.cost_nano)}, ${number(row.requests)} calls` })),
    { format: shortUsd, label: "Spend per day" },
  );
  spendChart.id = "chart-daily-spend";
  const callsChart = barChart(
    perDay.map((row) => ({ label: row.day.slice(5), value: row.requests, title: `${row.day}: ${number(row.requests)} calls` })),
    { format: countTick, label: "Calls per day" },
  );
  callsChart.id = "chart-daily-calls";
  const hourChart = barChart(
    hourly.data.map((row) => {
      const hour = new Date(row.hour_ms);
      return { label: `${String(hour.getHours()).padStart(2, "0")}h`, value: row.cost_nano, title: `${hour.toLocaleString()}: ${usd(row.cost_nano)}, ${number(row.charges)} charged calls` };
    }),
    { format: shortUsd, label: "Spend per hour, last 48 hours", width: 1240, height: 200 },
  );
  hourChart.id = "chart-hourly-spend";
  const breakdowns = groups.map((group, i) => {
    const rows = [...grouped[i].data].sort((a, b) => b.cost_nano - a.cost_nano);
    const column = { model: "model", key: "key_id", channel: "channel_id" }[group];
    const name = (row) => (names[group] ? names[group].get(row[column]) || `#${row[column]}` : row[column] || "—");
    return section(
      `By ${group}`,
      table(
        [
          [group[0].toUpperCase() + group.slice(1), name],
          ["Calls", (row) => number(row.requests), { class: "num" }],
          ["Prompt tokens", (row) => number(row.prompt_tokens), { class: "num" }],
          ["Completion tokens", (row) => number(row.completion_tokens), { class: "num" }],
          ["Spend", (row) => usd(row.cost_nano), { class: "num" }],
        ],
        rows,
        { empty: "No calls in this period." },
      ),
    );
  });
  return h(
    "div",
    {},
    h(
      "div.cards",
      {},
      card(`Spend, ${days} days`, usd(sum.cost_nano), { id: "total-spend", "data-nano": sum.cost_nano }),
      card("Calls", number(sum.requests), { id: "total-calls", "data-count": sum.requests }),
      card("Prompt tokens", number(sum.prompt_tokens)),
      card("Completion tokens", number(sum.completion_tokens)),
    ),
    h(
      "div.charts",
      {},
      h("div", {}, h("h2", { text: "Spend per day (UTC)" }), spendChart),
      h("div", {}, h("h2", { text: "Calls per day (UTC)" }), callsChart),
    ),
    h("div", {}, h("h2", { text: "Spend per hour, last 48 hours (from the ledger)" }), hourChart),
    breakdowns,
  );
}
