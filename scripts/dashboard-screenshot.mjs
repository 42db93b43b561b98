// Retakes docs/images/dashboard-failover.png from `npm start`: with the demo running, opens
// a backup's dashboard in Debian's Chromium, presses "Kill master", waits for the fail-over
// and the killed node's absence to show, and saves the page.
//   npm start &   (wait until it serves)   node scripts/dashboard-screenshot.mjs
import { chromium } from "playwright-core";

const endpoints = ["http://127.0.0.1:8101", "http://127.0.0.1:8102", "http://127.0.0.1:8103"];
const statuses = await Promise.all(
  endpoints.map((url) => fetch(`${url}/v1/status`).then((r) => r.json())),
);
const backup = endpoints[statuses.findIndex((s) => s.role === "backup")];
if (backup === undefined) throw new Error("no backup is serving: is `npm start` running?");
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 1140 } });
  await page.goto(`${backup}/`);
  await page.waitForTimeout(20_000); // a window of the demo's load on the charts
  await page.getByRole("button", { name: "Kill master" }).click();
  await page.getByText("Fail-over: became master").first().waitFor({ timeout: 10_000 });
  await page.waitForTimeout(2_500);
  // The viewport only: the key browser below lists a hundred keys of the demo's load.
  await page.screenshot({ path: "docs/images/dashboard-failover.png" });
  console.log(`saved docs/images/dashboard-failover.png from ${backup}/`);
} finally {
  await browser.close();
}
