// drive.mjs CONFIG_JSON: one browser session of tests/realclient/test_browser.py in headless
// Chromium (Debian's /usr/bin/chromium through playwright-core). Prints one JSON object per
// line, one per step, so the test can check each as it comes; exits 0 when every step it was
// asked for ran (whatever their results), 1 when the driver itself failed.
//
// CONFIG: {url, expect_key_refused?, hub_url?, ssh?: {host, user, root_too}, end: "logout"|"close",
//          screenshot?}  (playwright gives every launch a fresh, empty profile)
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const say = (step, data) => console.log(JSON.stringify({ step, ...data }));
const MINUTE = 60_000;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--ignore-certificate-errors"],
});
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.on("console", (msg) => say("console", { text: msg.text() }));
  page.on("pageerror", (err) => say("pageerror", { text: String(err) }));
  await page.goto(config.url);

  let key;
  try {
    key = await page.evaluate(() => tenscale.getKey());
    say("key", { namespace: key.namespace, prefix: key.key.slice(0, 20), expires_at: key.expires_at, control_url: key.control_url });
  } catch (err) {
    say("key", { error: String(err) });
  }
  if (!config.expect_key_refused && key) await session(page, key);
  await page.close();
  say("closed", {});
} catch (err) {
  say("error", { error: String(err && err.stack || err) });
  process.exitCode = 1;
} finally {
  await browser.close();
}

async function session(page, key) {
  await page.evaluate((k) => tenscale.start(k), key);
  await page.waitForFunction(() => tenscale.state === "Running" && tenscale.netMap && tenscale.netMap.peers
    && tenscale.netMap.peers.length > 0, null, { timeout: 2 * MINUTE, polling: 250 });
  say("running", await page.evaluate(() => ({ state: tenscale.state, netMap: tenscale.netMap })));

  if (config.hub_url) {
    let answer = null;
    const deadline = Date.now() + 2 * MINUTE;
    while (Date.now() < deadline) {
      try { answer = await page.evaluate((u) => tenscale.fetchText(u), config.hub_url); break; }
      catch (err) { say("fetch-retry", { error: String(err) }); await page.waitForTimeout(1000); }
    }
    say("fetch", answer || { error: "no answer within 2 minutes" });
  }

  if (config.ssh) {
    const { host, user, input, until } = config.ssh;
    say("ssh", await page.evaluate(([h, u, i, t]) => tenscale.ssh(h, u, i, t, 60_000), [host, user, input, until]));
    if (config.ssh.root_too) {
      say("ssh-root", await page.evaluate(([h, i, t]) => tenscale.ssh(h, "root", i, t, 30_000), [host, input, until]));
    }
  }
  if (config.screenshot) await page.screenshot({ path: config.screenshot, fullPage: true });

  if (config.end === "logout") {
    await page.evaluate(() => tenscale.logout());
    await page.waitForFunction(() => tenscale.state === "NeedsLogin", null, { timeout: MINUTE, polling: 250 });
    say("logout", { state: await page.evaluate(() => tenscale.state) });
  }
}
