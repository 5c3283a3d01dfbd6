// CounterFeed: the live set of a counter's uploadings. Follows
// WatchUploadings (snapshot, then changes), resumes with the last
// resume_token after a dropped stream, and backs off between attempts. On a
// server that does not serve WatchUploadings it falls back to polling
// ListUploadings, and says so in its connection state.
//
// Each entry keeps the status timeline the server sends (status_history:
// what the server observed since it began watching the uploading, with the
// times it first saw each status) and when the server last confirmed the
// state (the event's check_time, moved on by each message's check_time).
// A server that sends no history (or the polling fallback) leaves the
// timeline to what this page saw, and `historyFrom` says so.
import { Code, ConnectError, isPermanent, retryDelayMs } from "./api.js";

const POLL_MS = 2000;

export class CounterFeed {
  // `on.change(uploadings: Map<id, Entry>)`, `on.connection(state, text)`
  // with state connecting | live | reconnecting | polling | error,
  // `on.error(err | null)`, `on.checked(Date)`: every state held was
  // confirmed with Metrica at or after that time.
  // Entry: { uploading, history: [{status, statusRaw, at: Date}] (oldest
  // first; the last is the current status), historyFrom: "server" | "page",
  // checkedAt: Date (the server's last confirmation), fresh }.
  // `options.sleep(ms, signal)` replaces the timer between attempts (tests).
  constructor(client, counterId, on, options = {}) {
    this.client = client;
    this.counterId = counterId;
    this.on = on;
    this.sleep = options.sleep ?? sleep;
    this.entries = new Map();
    this.abort = new AbortController();
    this.resumeToken = "";
  }

  start() { this.#run(); }
  stop() { this.abort.abort(); }

  async #run() {
    let attempt = 0;
    while (!this.abort.signal.aborted) {
      this.on.connection(attempt === 0 ? "connecting" : "reconnecting",
                         attempt === 0 ? "connecting…" : `reconnecting (attempt ${attempt + 1})…`);
      try {
        await this.#watch(() => { attempt = 0; });
        return;  // the stream does not end by itself: only when stopped
      } catch (err) {
        if (this.abort.signal.aborted) return;
        const e = ConnectError.from(err);
        if (e.code === Code.Unimplemented) return this.#poll();
        if (isPermanent(e)) {
          this.on.connection("error", "stopped");
          this.on.error(e);
          return;
        }
        this.on.error(e);
        attempt++;
        const wait = retryDelayMs(e) ?? Math.min(15000, 500 * 2 ** Math.min(attempt, 5));
        this.on.connection("reconnecting", `connection lost, retrying in ${Math.round(wait / 1000)} s`);
        await this.#sleep(wait);
      }
    }
  }

  async #watch(onConnected) {
    const stream = this.client.watchUploadings(
      { counterId: this.counterId, resumeToken: this.resumeToken },
      { signal: this.abort.signal },
    );
    for await (const m of stream) {
      if (m.reset) this.entries.clear();
      for (const ev of m.events) {
        const observed = ev.observeTime ? timestampDate(ev.observeTime) : new Date();
        this.#apply(ev.uploading, observed, ev.checkTime ? timestampDate(ev.checkTime) : observed,
                    ev.statusHistory.map((o) => ({ status: o.status, statusRaw: o.statusRaw,
                                                   at: timestampDate(o.observeTime) })));
      }
      if (m.resumeToken) this.resumeToken = m.resumeToken;
      if (m.synced) {
        onConnected();
        this.on.connection("live", "live");
        this.on.error(null);
      }
      const confirmed = m.checkTime ? this.#confirmAll(timestampDate(m.checkTime)) : false;
      if (m.checkTime) this.on.checked(timestampDate(m.checkTime));
      if (m.events.length > 0 || m.reset || confirmed) this.on.change(this.entries);
    }
  }

  async #poll() {
    while (!this.abort.signal.aborted) {
      try {
        const { uploadings } = await this.client.listUploadings(
          { counterId: this.counterId }, { signal: this.abort.signal });
        const now = new Date();  // the page's time: a list says no more
        for (const u of uploadings) this.#apply(u, now, now, []);
        this.on.connection("polling", "live (polling: this server has no WatchUploadings)");
        this.on.error(null);
        this.on.checked(now);
        this.on.change(this.entries);
      } catch (err) {
        if (this.abort.signal.aborted) return;
        this.on.error(err);
        if (isPermanent(err)) {
          this.on.connection("error", "stopped");
          return;
        }
        this.on.connection("reconnecting", "retrying…");
      }
      await this.#sleep(POLL_MS);
    }
  }

  // `history`: the server's status_history ([] when it sent none).
  #apply(uploading, observed, checked, history) {
    const key = String(uploading.id);
    const entry = this.entries.get(key);
    const seen = { status: uploading.status, statusRaw: uploading.statusRaw, at: observed };
    if (!entry) {
      this.entries.set(key, {
        uploading, fresh: true, checkedAt: checked,
        history: history.length > 0 ? history : [seen],
        historyFrom: history.length > 0 ? "server" : "page",
      });
      return;
    }
    if (history.length > 0) {
      entry.history = history;
      entry.historyFrom = "server";
    } else if (entry.uploading.status !== uploading.status || entry.uploading.statusRaw !== uploading.statusRaw) {
      entry.history.push(seen);
    }
    entry.fresh = JSON.stringify(entry.uploading, replacer) !== JSON.stringify(uploading, replacer);
    entry.uploading = uploading;
    if (checked > entry.checkedAt) entry.checkedAt = checked;
  }

  // Every held state was confirmed at `at` or later; true if that is news
  // for any of them.
  #confirmAll(at) {
    let moved = false;
    for (const entry of this.entries.values()) {
      if (at > entry.checkedAt) {
        entry.checkedAt = at;
        moved = true;
      }
    }
    return moved;
  }

  #sleep(ms) { return this.sleep(ms, this.abort.signal); }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

const replacer = (_, v) => (typeof v === "bigint" ? v.toString() : v);

export function timestampDate(ts) {
  return new Date(Number(ts.seconds) * 1000 + Math.round(ts.nanos / 1e6));
}
