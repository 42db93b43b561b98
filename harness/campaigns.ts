/**
 * Fault campaigns as the tests run them: three nodes, no stale reads and the partition
 * method the machine allows unless a test says otherwise, each campaign's report in a
 * folder of its own under one temporary directory that is removed after the file's tests.
 * runCampaign removes its own processes, rules and data, pass or throw.
 */

import { join } from "node:path";
import { type CampaignOptions, type CampaignResult, runCampaign } from "../src/chaos/campaign.js";
import { useTempDir } from "./vitest-hooks.js";

/** A campaign's options; `out` is chosen here, and the rest have the defaults above. */
export type TestCampaignOptions = Omit<CampaignOptions, "out" | "nodes" | "staleReads" | "method"> &
  Partial<Pick<CampaignOptions, "nodes" | "staleReads" | "method">>;

/** Registers the report folder of the calling test file; returns its campaign runner. */
export function useCampaigns(): (
  name: string,
  options: TestCampaignOptions,
) => Promise<CampaignResult> {
  const out = useTempDir("baton-chaos-report-");
  return (name, options) =>
    runCampaign({
      nodes: 3,
      staleReads: false,
      method: "auto",
      ...options,
      out: join(out, name),
    });
}
