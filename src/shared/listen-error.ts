/**
 * A failed listen, said in the terms of the setting that gave the address: which flag,
 * and what to do. The peer port (`--listen`) and the HTTP API (`--http`) share it.
 */

/** The setting an address came from, and the one that names the address others use. */
export interface ListenSetting {
  /** `--listen` or `--http`. */
  readonly flag: string;
  /** `--advertise-peer` or `--advertise-http`, and who uses that address. */
  readonly advertise: string;
}

/**
 * The error of a failed listen on `address` (from `setting`), naming the flag and saying
 * what to do, with the original error's `code` kept; an error without a known code passes
 * as it is.
 */
export function listenError(error: unknown, address: string, setting: ListenSetting): unknown {
  const code = (error as NodeJS.ErrnoException)?.code;
  const advice: Record<string, string> = {
    EADDRINUSE: "the port is in use by another process (is another node running here?)",
    EADDRNOTAVAIL: `the address is not one of this machine's (${setting.flag} is the local address to listen on; ${setting.advertise})`,
    EACCES: "this user may not listen on that port (ports below 1024 need privileges)",
  };
  if (code === undefined || advice[code] === undefined) return error;
  return Object.assign(
    new Error(`${setting.flag} ${address}: ${advice[code]} (${code})`, { cause: error }),
    { code },
  );
}
