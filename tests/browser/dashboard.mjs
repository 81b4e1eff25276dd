// Opens frps's dashboard in Debian's Chromium (driven by playwright-core,
// which downloads no browser), checks what it shows for a running tunnel,
// and saves a screenshot. Run by tests/tests/dashboard_browser.rs:
//   node dashboard.mjs URL USER PASSWORD PROXY HOSTNAME SCREENSHOT
// Exits non-zero, saying why, when the page does not show the tunnel.
// With EXTRA_PROXY set, that proxy's row must be there too; with
// ANNOTATION, PROXY's row shows that annotation as a tag; with
// PRIVATE_PROXY, that stcp proxy's row says which visitors reach it.
import { chromium } from "playwright-core";

const [url, username, password, proxy, hostname, screenshot] = process.argv.slice(2);
const fail = (msg) => { console.error("dashboard: " + msg); process.exitCode = 1; };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const context = await browser.newContext({ httpCredentials: { username, password }, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: "load", timeout: 30000 });
  await page.waitForSelector("body[data-loaded='1']", { timeout: 30000 });
  const text = (sel) => page.locator(sel).innerText();

  if (await text("#card-clients") !== "1") fail("clients card shows " + await text("#card-clients"));
  const wantProxies = String(1 + (process.env.EXTRA_PROXY ? 1 : 0) + (process.env.PRIVATE_PROXY ? 1 : 0));
  if (await text("#card-proxies") !== wantProxies) fail("proxies card shows " + await text("#card-proxies"));
  const traffic = await text("#card-traffic");
  if (!/KiB|MiB/.test(traffic)) fail("traffic today shows " + traffic);
  const client = page.locator("#clients-body tr").first();
  const clientText = await client.innerText();
  for (const want of [hostname, "online", "127.0.0.1", " ms"]) {
    if (!clientText.includes(want)) fail("clients row lacks " + want + ": " + clientText);
  }
  const row = page.locator(`tr[data-proxy="${proxy}"]`);
  if (await row.count() !== 1) fail("no row for proxy " + proxy);
  const rowText = await row.innerText();
  if (!rowText.includes("online")) fail("proxy row: " + rowText);
  const todayIn = Number(await row.locator("svg.chart").getAttribute("data-today-in"));
  if (!(todayIn >= 100000)) fail("chart's today in: " + todayIn);
  const bars = await row.locator("svg.chart rect").count();
  if (bars !== 14) fail("chart has " + bars + " bars, not 14");
  if (!(await text("#config")).includes("Bind port")) fail("no server configuration");
  // The proxy's annotation, as text (ANNOTATION holds markup characters).
  const want = process.env.ANNOTATION;
  if (want) {
    const tag = row.locator("span.tag[data-annotation]");
    const shown = (await tag.count()) === 1 ? await tag.innerText() : "(none)";
    if (shown !== want) fail("annotation shows " + JSON.stringify(shown) + ", not " + JSON.stringify(want));
  }
  // A name that needs percent-encoding (EXTRA_PROXY) has its row and chart.
  const extra = process.env.EXTRA_PROXY;
  if (extra) {
    const rows = page.locator("tr[data-proxy]");
    const names = await rows.evaluateAll((rs) => rs.map((r) => r.dataset.proxy));
    const i = names.indexOf(extra);
    if (i < 0) fail("no row for " + JSON.stringify(extra) + " among " + JSON.stringify(names));
    else if (await rows.nth(i).locator("svg.chart rect").count() !== 14) fail("no chart for " + extra);
  }
  // A private proxy (PRIVATE_PROXY, allowUsers PRIVATE_USERS) is listed
  // as reached through its visitors.
  const priv = process.env.PRIVATE_PROXY;
  if (priv) {
    const r = page.locator(`tr[data-proxy="${priv}"]`);
    const shown = (await r.count()) === 1 ? await r.innerText() : "(no row)";
    if (!shown.includes("visitors of " + process.env.PRIVATE_USERS)) fail("private proxy row: " + shown);
  }
  if (errors.length) fail("script errors: " + errors.join("; "));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log("dashboard: ok, screenshot " + screenshot);
} finally {
  await browser.close();
}
