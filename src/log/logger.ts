import pino, { type DestinationStream, type Logger } from "pino";

export type { Logger } from "pino";

import type { LogLevel } from "./levels.js";

export { LOG_LEVELS, type LogLevel } from "./levels.js";

/**
 * Field paths censored wherever they appear, as a second line of defence:
 * the code never puts a secret into a log call in the first place.
 */
const REDACT_PATHS = ["secret", "key", "token", "authorization", "*.secret", "*.key", "*.token", "*.authorization", "headers", "*.headers"];

/** Creates the JSON logger every component shares; one line per event, fixed field names. */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "tollgate" },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 2, sync: false }),
  );
}
