/**
 * A manual check that the dashboard works in Firefox (the CI browser test drives Chromium
 * with playwright-core, which cannot drive a stock Firefox). Puppeteer drives Debian's
 * firefox-esr over WebDriver BiDi: open the page of a running `baton demo`, see three
 * members and a master, click "Kill master", wait for the fail-over line, screenshot.
 *
 *   apt-get install -y firefox-esr && npm i --no-save puppeteer-core
 *   npx baton demo &   # or npm start
 *   node scripts/firefox-dashboard-check.mjs http://127.0.0.1:8101/ firefox.png
 */
import puppeteer from "puppeteer-core";

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: "/usr/bin/firefox-esr",
  headless: true,
  protocolTimeout: 60000,
});
const page = await browser.newPage();
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
await page.setViewport({ width: 1280, height: 900 });
await page.goto(process.argv[2] ?? "http://127.0.0.1:8101/", { waitUntil: "load" });
await page.waitForFunction(
  () =>
    document.querySelectorAll("tbody tr").length >= 3 && /master/i.test(document.body.innerText),
  { timeout: 30000 },
);
const rows = await page.$$eval("tbody tr", (rs) =>
  rs.map((r) => r.innerText.replace(/\s+/g, " ").slice(0, 80)),
);
console.log("rows:", rows);
const buttons = await page.$$eval("button", (bs) => bs.map((b) => b.innerText.trim()));
console.log("buttons:", buttons);
const handles = await page.$$("button");
for (const h of handles) {
  const t = await h.evaluate((b) => b.innerText);
  if (/kill master/i.test(t)) {
    await h.click();
    console.log("clicked", t);
    break;
  }
}
await page.waitForFunction(() => /fail-over/i.test(document.body.innerText), { timeout: 30000 });
await new Promise((r) => setTimeout(r, 2000));
await page.screenshot({ path: process.argv[3] ?? "firefox-dashboard.png" });
console.log("fail-over seen; page errors:", errors);
await browser.close();
