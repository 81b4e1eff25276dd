// Opens frpc's admin UI in Debian's Chromium (driven by playwright-core,
// which downloads no browser) and uses it as an operator would: the proxy
// list (one name full of HTML, quotes and non-ASCII), one proxy's config,
// then the config editor: add a proxy, save, reload, see it run; save a
// broken file and read the refusal. Last, a page of another origin
// (ATTACKER_URL, whose page frames the UI) tries to show it. Run by
// tests/tests/admin_browser.rs:
//   node admin_ui.mjs URL USER PASSWORD ODD_NAME SCREENSHOT
// with ADD_TOML (a proxy named "added"), BROKEN_TOML and ATTACKER_URL in
// the environment.
// Exits non-zero, saying why, when the page does not do what it should.
import { chromium } from "playwright-core";

const [url, username, password, odd, screenshot] = process.argv.slice(2);
const { ADD_TOML: add, BROKEN_TOML: broken, ATTACKER_URL: attacker } = process.env;
const fail = (msg) => { console.error("admin ui: " + msg); process.exitCode = 1; };
const WAIT = { timeout: 30000 };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

async function proxyList(page) {
  const list = page.locator("#proxies-body tr[data-proxy]");
  await list.first().waitFor(WAIT);
  const names = await list.evaluateAll((rs) => rs.map((r) => r.dataset.proxy));
  const i = names.indexOf(odd);
  if (!names.includes("ssh-box") || i < 0) return fail("proxies listed: " + JSON.stringify(names));
  // The name is shown as the text it is: no element made of it.
  const shown = await list.nth(i).locator("td.name").innerText();
  if (shown !== odd) fail("the odd name shows as " + JSON.stringify(shown));
  if (await page.locator("#proxies-body img").count()) fail("a proxy name became an <img>");
  await page.waitForSelector(`tr[data-status="running"] >> nth=1`, WAIT);
  // Its config, through a percent-encoded /api/proxy/{name}/config.
  await list.nth(i).locator("td.name button").click();
  await page.waitForFunction(() => document.getElementById("detail-body").textContent.includes("localPort"), null, WAIT);
  const def = JSON.parse(await page.locator("#detail-body").innerText());
  if (def.name !== odd || def.type !== "tcp" || def.tcp.name !== odd || !def.tcp.localPort) {
    fail("config shown for the odd name: " + JSON.stringify(def));
  }
}

async function editor(page) {
  await page.waitForSelector("body[data-config-loaded='1']", WAIT);
  const file = await page.locator("#config-text").inputValue();
  if (!file.includes('"ssh-box"')) fail("the editor does not hold the file: " + file);
  const message = page.locator("#message");

  await page.locator("#config-text").fill(file + add);
  await page.locator("#save").click();
  await page.waitForSelector("#message.ok", WAIT);
  if (!(await message.innerText()).includes("Saved")) fail("after saving: " + await message.innerText());
  await page.locator("#reload").click();
  await page.waitForFunction(() => document.getElementById("message").textContent.startsWith("Reloaded"), null, WAIT);
  await page.waitForSelector('tr[data-proxy="added"][data-status="running"]', WAIT);

  await page.locator("#config-text").fill(file + add + broken);
  await page.locator("#save").click();
  await page.waitForSelector("#message.error", WAIT);
  const refusal = await message.innerText();
  for (const want of ["the file is unchanged", "unknown key `bogus`"]) {
    if (!refusal.includes(want)) fail("the refusal lacks " + JSON.stringify(want) + ": " + refusal);
  }
  // Reloading now reads the file as it was saved last.
  await page.locator("#reload").click();
  await page.waitForFunction(() => document.getElementById("message").textContent.includes("unsaved edits are not in it"), null, WAIT);
  if (await page.locator('tr[data-proxy="added"][data-status="running"]').count() !== 1) fail("added proxy gone after a refused save");
}

// A page of another origin (a local one: Chromium keeps public pages off
// loopback anyway) frames the UI: Chromium must not render it.
async function framed(context) {
  const page = await context.newPage();
  await page.goto(attacker, { waitUntil: "load", ...WAIT });
  const frame = page.frames().find((f) => f !== page.mainFrame());
  if (!frame) return fail("the attacker's page has no frame");
  const rendered = await frame.evaluate(() => !!document.getElementById("save")).catch(() => false);
  if (rendered) fail("a page of another origin framed the UI");
  console.log("framed by another origin: " + frame.url());
}

try {
  const context = await browser.newContext({ httpCredentials: { username, password }, viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // A refused request is logged too; only what the page's policy blocked counts.
  page.on("console", (m) => { if (m.text().includes("Content Security Policy")) errors.push(m.text()); });
  page.on("dialog", (d) => { errors.push("dialog: " + d.message()); d.dismiss(); });
  const r = await page.goto(url, { waitUntil: "load", ...WAIT });
  if (!r.url().endsWith("/static/")) fail("/ led to " + r.url());
  await page.waitForSelector("body[data-loaded='1']", WAIT);
  await proxyList(page);
  await editor(page);
  if (await page.evaluate(() => document.body.dataset.pwned)) fail("a proxy name ran as script");
  if (errors.length) fail("script errors: " + errors.join("; "));
  await page.screenshot({ path: screenshot, fullPage: true });
  await framed(context);
  if (!process.exitCode) console.log("admin ui: ok, screenshot " + screenshot);
} finally {
  await browser.close();
}
