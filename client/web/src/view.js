// Rendering of a counter's uploadings: the table with a stage bar per row,
// the summary picture, the detail panel. DOM only; no calls.
import { Uploading_Status, Uploading_Type } from "../gen/metrika/offline_conversions/v1/uploading_service_pb.js";
import { timestampDate } from "./feed.js";

const S = Uploading_Status;
// The journey every uploading makes; the last stage is one of two ends.
const STAGES = [S.PREPARED, S.UPLOADED, S.EXPORTED, S.MATCHED];
const COLORS = {
  [S.STATUS_UNSPECIFIED]: "#bdbdbd", [S.PREPARED]: "#bbdefb", [S.UPLOADED]: "#90caf9",
  [S.EXPORTED]: "#64b5f6", [S.MATCHED]: "#1e88e5", [S.PROCESSED]: "#2e7d32",
  [S.LINKAGE_FAILURE]: "#c62828",
};
const ORDER = [S.PREPARED, S.UPLOADED, S.EXPORTED, S.MATCHED, S.PROCESSED, S.LINKAGE_FAILURE, S.STATUS_UNSPECIFIED];

export const statusName = (u) => (u.status === S.STATUS_UNSPECIFIED && u.statusRaw ? u.statusRaw : S[u.status]);
// The current status's first observation; "≥" when the server never saw it
// begin (it was already in it at the server's first look).
const inStatus = (entry) => ({ since: entry.history.at(-1).at, atLeast: entry.history.length === 1 });
const typeName = (u) => (u.type === Uploading_Type.TYPE_UNSPECIFIED ? (u.typeRaw || "BASIC") : Uploading_Type[u.type]);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

export function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} days`;
}

function stageBar(u) {
  const terminal = u.status === S.PROCESSED || u.status === S.LINKAGE_FAILURE;
  const reached = terminal ? STAGES.length + 1 : STAGES.indexOf(u.status) + 1;
  const bar = el("div", { class: `stage ${S[u.status] ?? ""}`, title: statusName(u) });
  for (let i = 0; i < STAGES.length + 1; i++) bar.append(el("span", { class: i < reached ? "done" : "" }));
  bar.append(el("b", {}, statusName(u)));
  return bar;
}

const created = (u) => (u.createTime ? timestampDate(u.createTime).toISOString().replace("T", " ").slice(0, 16) : "");

// Rows newest first (ids grow with time).
export function renderTable(tbody, entries, onSelect, now = Date.now()) {
  const sorted = [...entries.values()].sort((a, b) => (b.uploading.id > a.uploading.id ? 1 : -1));
  tbody.replaceChildren(...sorted.map((entry) => {
    const u = entry.uploading;
    const { since, atLeast } = inStatus(entry);
    const checked = entry.checkedAt.getTime();
    const row = el("tr", { "data-id": String(u.id), "data-status": statusName(u), class: entry.fresh ? "fresh" : "" },
      el("td", {}, String(u.id)), el("td", {}, u.comment), el("td", {}, typeName(u)),
      el("td", {}, created(u)), el("td", {}, stageBar(u)),
      el("td", { class: "num" }, u.lineQuantity), el("td", { class: "num" }, u.linkedQuantity),
      el("td", { class: "num" }, u.userNotFoundQuantity), el("td", { class: "num" }, u.goalNotFoundQuantity),
      el("td", { class: "since", "data-since": String(since.getTime()), "data-prefix": atLeast ? "≥ " : "",
                 title: `status first seen by the server ${since.toLocaleString()}` },
         `${atLeast ? "≥ " : ""}${ago(now - since.getTime())}`),
      el("td", { class: "checked", "data-checked": String(checked),
                 title: `the server last confirmed it with Metrica ${entry.checkedAt.toLocaleString()}` },
         `checked ${ago(now - checked)} ago`));
    row.addEventListener("click", () => onSelect(String(u.id)));
    entry.fresh = false;
    return row;
  }));
}

// Updates the "in status" and "checked" cells without a re-render.
export function tick(root, now = Date.now()) {
  for (const td of root.querySelectorAll("[data-since]")) {
    td.textContent = `${td.dataset.prefix ?? ""}${ago(now - Number(td.dataset.since))}`;
  }
  for (const td of root.querySelectorAll("[data-checked]")) {
    td.textContent = `checked ${ago(now - Number(td.dataset.checked))} ago`;
  }
}

export function renderSummary(bar, legend, entries) {
  const counts = new Map();
  for (const { uploading: u } of entries.values()) counts.set(u.status, (counts.get(u.status) ?? 0) + 1);
  const total = entries.size || 1;
  const present = ORDER.filter((s) => counts.get(s));
  bar.replaceChildren(...present.map((s) =>
    el("div", { style: `width:${(100 * counts.get(s)) / total}%;background:${COLORS[s]}`, title: `${S[s]}: ${counts.get(s)}` })));
  legend.replaceChildren(...present.map((s) =>
    el("li", { "data-status": S[s] }, el("i", { style: `background:${COLORS[s]}` }), `${S[s]} ${counts.get(s)}`)));
}

export function renderDetail(panel, entry, now = Date.now()) {
  const u = entry.uploading;
  panel.querySelector("#detail-title").textContent = `Uploading ${u.id}`;
  const fields = [
    ["Status", statusName(u)], ["Comment", u.comment], ["Type", typeName(u)], ["Created", created(u)],
    ["Source lines", u.sourceQuantity], ["Valid lines", u.lineQuantity], ["Linked", u.linkedQuantity],
    ["User not found", u.userNotFoundQuantity], ["Goal not found", u.goalNotFoundQuantity],
  ];
  if (u.staticCallsQuantity || u.dynamicCallsQuantity) {
    fields.push(["Static calls", u.staticCallsQuantity], ["Dynamic calls", u.dynamicCallsQuantity]);
  }
  panel.querySelector("#detail-fields").replaceChildren(
    ...fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]),
    el("dt", {}, "Last checked"),
    el("dd", { "data-checked": String(entry.checkedAt.getTime()) }, `checked ${ago(now - entry.checkedAt.getTime())} ago`));
  const steps = entry.history.map((h, i) => {
    const next = entry.history[i + 1];
    const name = statusName(h);
    const lasted = next
      ? `, for ${ago(next.at - h.at)}`
      : el("span", {}, ", current for ",
           el("span", { "data-since": String(h.at.getTime()) }, ago(now - h.at.getTime())));
    return el("li", { "data-status": name, "data-at": h.at.toISOString() },
      el("b", {}, name), ` — first seen ${h.at.toLocaleString()}`, lasted);
  });
  panel.querySelector("#detail-timeline").replaceChildren(...steps);
  panel.querySelector("#detail-timeline-note").textContent = entry.historyFrom === "server"
    ? "The statuses this uploadwatch server observed, each with the time it first saw it, since it began watching " +
      "this uploading. Metrica keeps no status history, so the first entry is the status at the server's first " +
      "look, not when Metrica entered it."
    : "The statuses this page saw since it was opened (this server sends no status history).";
  panel.hidden = false;
}
