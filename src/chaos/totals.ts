/**
 * Adds up the verdict.json files of several campaign reports, for docs/reliability.md:
 * `npx tsx src/chaos/totals.ts results/chaos/hour/seed-*`. It only reads reports; the sums
 * are report-totals.ts's. A directory without a verdict (a campaign that threw) counts as a
 * failed run, and is named.
 */

import { sumReports, totalsText } from "./report-totals.js";

console.log(totalsText(sumReports(process.argv.slice(2))));
