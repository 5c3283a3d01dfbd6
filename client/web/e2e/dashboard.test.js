// The dashboard page in real, headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; no browser is downloaded), served by the real
// server's --web_listen from client/web/dist on the simulator's demo world.
// scripts/lib/web_tests.sh runs it:
//
//   UPLOADWATCH_WEB_URL=http://127.0.0.1:PORT node --test e2e/
//
// Screenshots go to $UPLOADWATCH_SCREENSHOTS (default client/web/screenshots).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const URL = process.env.UPLOADWATCH_WEB_URL;
const CHROMIUM = process.env.UPLOADWATCH_CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.UPLOADWATCH_SCREENSHOTS ||
  join(dirname(dirname(fileURLToPath(import.meta.url))), "screenshots");
const ORDER = ["PREPARED", "UPLOADED", "EXPORTED", "MATCHED", "PROCESSED", "LINKAGE_FAILURE"];

describe("dashboard in Chromium", { skip: !URL && "UPLOADWATCH_WEB_URL is not set" }, () => {
  let context;
  let profile;
  let liveId;  // the upload the live test followed
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    profile = mkdtempSync(join(tmpdir(), "uploadwatch-chromium-"));  // a fresh profile
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"],
      viewport: { width: 1400, height: 900 },
    });
  });
  after(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  async function openCounter(counter) {
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${URL}/?counter=${counter}`);
    return { page, errors };
  }

  const rowStatus = (page, id) => page.getAttribute(`tr[data-id="${id}"]`, "data-status");

  it("loads the demo counter and shows its settled uploadings", async () => {
    const { page, errors } = await openCounter(2215573);
    await page.waitForSelector('tr[data-id="12"]', { timeout: 20000 });
    assert.equal(await rowStatus(page, "12"), "PROCESSED");
    for (const id of ["13", "16", "17", "18", "19"]) {
      assert.ok(await page.$(`tr[data-id="${id}"]`), `row ${id} missing`);
    }
    assert.equal(await rowStatus(page, "13"), "LINKAGE_FAILURE");
    assert.match(await page.textContent('tr[data-id="12"]'), /CRM export, December/);
    const legend = await page.textContent("#summary-legend");
    assert.match(legend, /PROCESSED \d+/);
    const state = await page.getAttribute("#connection", "data-state");
    assert.ok(["live", "polling"].includes(state), `connection: ${state}`);
    await page.screenshot({ path: join(SHOTS, "counter.png"), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  it("a live upload appears and moves on without a reload", async () => {
    const { page, errors } = await openCounter(2215573);
    await page.waitForSelector('tr[data-id="12"]', { timeout: 20000 });
    const ids = async () => page.$$eval("tbody tr", (rows) => rows.map((r) => r.dataset.id));
    const first = new Set(await ids());
    // Demo uploads start every 3 s at --demo_speed=10: a new row must appear.
    await page.waitForFunction(
      (known) => [...document.querySelectorAll("tbody tr")].some((r) => !known.includes(r.dataset.id)),
      [...first], { timeout: 30000 });
    const fresh = (await ids()).find((id) => !first.has(id));
    liveId = fresh;
    const seen = [await rowStatus(page, fresh)];
    // ...and it moves through its stages while the page stays loaded.
    await page.waitForFunction(
      ([id, was]) => document.querySelector(`tr[data-id="${id}"]`)?.dataset.status !== was,
      [fresh, seen[0]], { timeout: 30000 });
    seen.push(await rowStatus(page, fresh));
    assert.ok(ORDER.indexOf(seen[1]) > ORDER.indexOf(seen[0]), `went ${seen.join(" -> ")}`);
    await page.click(`tr[data-id="${fresh}"]`);
    await page.waitForSelector("#detail:not([hidden])");
    assert.match(await page.textContent("#detail-timeline"), new RegExp(seen[1]));
    // "checked N s ago" on every row, ticking between messages.
    const checked = () => page.textContent(`tr[data-id="12"] td.checked`);
    const before = await checked();
    assert.match(before, /^checked \d+ s ago$/);
    await page.waitForFunction((was) =>
      document.querySelector('tr[data-id="12"] td.checked')?.textContent !== was, before, { timeout: 5000 });
    assert.match(await checked(), /^checked \d+ (s|min \d+ s) ago$/);
    await page.screenshot({ path: join(SHOTS, "live.png"), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  // The timeline is the server's, not what the page saw: a page opened
  // after the upload moved on still shows each status it went through.
  it("a page opened later shows the server's timeline of an uploading", async () => {
    // The upload the previous test saw move on, before this page existed.
    assert.ok(liveId, "the live test found no upload");
    const id = liveId;
    const opened = Date.now();
    const { page, errors } = await openCounter(2215573);
    await page.waitForSelector(`tr[data-id="${id}"]`, { timeout: 20000 });
    await page.click(`tr[data-id="${id}"]`);
    await page.waitForSelector("#detail:not([hidden]) #detail-timeline li");
    const steps = await page.$$eval("#detail-timeline li", (lis) =>
      lis.map((li) => ({ status: li.dataset.status, at: Date.parse(li.dataset.at) })));
    assert.ok(steps.length >= 2, `timeline: ${JSON.stringify(steps)}`);
    for (let i = 1; i < steps.length; i++) {
      assert.ok(ORDER.indexOf(steps[i].status) > ORDER.indexOf(steps[i - 1].status), JSON.stringify(steps));
      assert.ok(steps[i].at >= steps[i - 1].at, JSON.stringify(steps));
    }
    assert.ok(steps[1].at < opened, `a change the server saw before the page opened: ${JSON.stringify(steps)}`);
    assert.equal(steps.at(-1).status, await rowStatus(page, id));
    assert.match(await page.textContent("#detail-timeline-note"), /server observed.*Metrica keeps no status history/);
    await page.screenshot({ path: join(SHOTS, "timeline.png"), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });

  it("an unknown counter is an error a person can act on", async () => {
    const { page, errors } = await openCounter(1);
    await page.waitForSelector("#error:not([hidden])", { timeout: 20000 });
    const text = await page.textContent("#error");
    assert.match(text, /counter 1/);
    assert.match(text, /(no counter|no access)/);
    assert.equal(await page.getAttribute("#connection", "data-state"), "error");
    await page.screenshot({ path: join(SHOTS, "error.png"), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });
});
