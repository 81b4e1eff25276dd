// A page of another origin attacks frpc's admin API from Debian's Chromium
// (driven by playwright-core): a form POST to /api/stop, an <img> and a
// no-cors fetch of GET /api/reload, a top-level navigation to it, and a
// text/plain POST; then a name re-pointed at 127.0.0.1 (DNS rebinding,
// through Chromium's resolver rules) reads /api/config as its own origin.
// Run by tests/tests/admin.rs:
//   node cross_origin.mjs ATTACKER_URL ADMIN_PORT
// Prints one line per attempt; exits non-zero when the page could not run.
import { chromium } from "playwright-core";

const [attacker, adminPort] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP rebind.test 127.0.0.1"],
});
try {
  const page = await browser.newPage();
  await page.goto(attacker, { waitUntil: "load", timeout: 30000 });
  await page.waitForFunction(() => document.title === "done", null, { timeout: 30000 });
  console.log("attacker page: " + await page.evaluate(() => document.body.dataset.log));
  // A navigation of the top-level page from the attacker's origin.
  const nav = await browser.newPage();
  await nav.goto(attacker + "#nav", { waitUntil: "load", timeout: 30000 });
  const reload = `http://127.0.0.1:${adminPort}/api/reload`;
  const [navigated] = await Promise.all([
    nav.waitForNavigation({ url: reload, timeout: 30000 }),
    nav.evaluate((u) => { setTimeout(() => { window.location.href = u; }, 0); }, reload),
  ]);
  console.log("navigation to /api/reload: " + (navigated ? navigated.status() : "no response"));
  // DNS rebinding: the page's own origin is the admin port under a name.
  const rebound = await browser.newPage();
  const r = await rebound.goto(`http://rebind.test:${adminPort}/api/config`, { timeout: 30000 });
  console.log("rebinding /api/config: " + r.status() + " " + JSON.stringify(await r.text()));
} finally {
  await browser.close();
}
