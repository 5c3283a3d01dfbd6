// The dashboard page: one counter's offline-conversion uploads, live.
// /?counter=ID opens a counter; the token field is kept in this tab's
// sessionStorage only and sent as `authorization` (else the server's token).
import { uploadingClient, explain } from "./api.js";
import { CounterFeed } from "./feed.js";
import { renderDetail, renderSummary, renderTable, tick, ago } from "./view.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "uploadwatch.token";
let feed = null;
let selected = null;
let lastChecked = null;

function setConnection(state, text) {
  const badge = $("connection");
  badge.dataset.state = state;
  badge.textContent = text;
}

function open(counterId) {
  if (feed) feed.stop();
  selected = null;
  lastChecked = null;
  $("detail").hidden = true;
  $("error").hidden = true;
  $("uploadings").hidden = true;
  $("summary").hidden = true;
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  feed = new CounterFeed(uploadingClient(token), counterId, {
    change(entries) {
      $("uploadings").hidden = false;
      $("summary").hidden = false;
      renderTable($("uploadings").tBodies[0], entries, (id) => {
        selected = id;
        renderDetail($("detail"), entries.get(id));
      });
      renderSummary($("summary-bar"), $("summary-legend"), entries);
      if (selected && entries.has(selected)) renderDetail($("detail"), entries.get(selected));
    },
    connection: setConnection,
    error(err) {
      $("error").hidden = err === null;
      if (err) $("error").textContent = explain(err, counterId);
    },
    checked(at) { lastChecked = at; },
  });
  feed.start();
}

function counterFromUrl() {
  const v = new URLSearchParams(location.search).get("counter");
  return v && /^\d+$/.test(v) ? Number(v) : null;
}

$("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
$("counter-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const counter = $("counter").value.trim();
  const token = $("token").value.trim();
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  if (!/^\d+$/.test(counter) || Number(counter) <= 0) {
    $("error").hidden = false;
    $("error").textContent = "A counter id is a positive number, e.g. 2215573.";
    return;
  }
  history.replaceState(null, "", `?counter=${counter}`);
  open(Number(counter));
});
$("detail-close").addEventListener("click", () => { selected = null; $("detail").hidden = true; });
// Ages tick every second, between messages too.
setInterval(() => {
  tick($("uploadings").tBodies[0]);
  tick($("detail"));
  $("checked").textContent = lastChecked
    ? `Every row was confirmed with Metrica at most ${ago(Date.now() - lastChecked.getTime())} ago.` : "";
}, 1000);

const initial = counterFromUrl();
if (initial) {
  $("counter").value = String(initial);
  open(initial);
}
