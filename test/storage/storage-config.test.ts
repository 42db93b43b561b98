/** Parsing of the storage settings: defaults, and every bad field reported at once. */

import { describe, expect, it } from "vitest";
import { defaultStorageConfig, parseStorageConfig } from "../../src/storage/storage-config.js";

describe("storage config", () => {
  it("storage config: missing fields take their defaults (empty input)", () => {
    const config = parseStorageConfig({});
    expect(config).toEqual(defaultStorageConfig());
    expect(config.walSegmentBytes).toBe(64 * 1024 * 1024);
    expect(Object.isFrozen(config)).toBe(true);
  });

  it("storage config: every bad field is reported at once (three problems)", () => {
    const input = { walSegmentBytes: 10, snapshotsRetainedCount: 0, bogus: 1 } as never;
    const error = (() => {
      try {
        parseStorageConfig(input);
      } catch (e) {
        return e;
      }
      return null;
    })();
    expect(error).toMatchObject({ code: "ERR_STORAGE_CONFIG" });
    expect((error as { problems: string[] }).problems).toEqual([
      "bogus is not a storage setting",
      "walSegmentBytes must be an integer from 4096 to 1073741824 (got 10)",
      "snapshotsRetainedCount must be an integer from 1 to 100 (got 0)",
    ]);
  });
});
