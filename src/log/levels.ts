/** Log levels, most severe first; `silent` turns logging off. Kept apart from pino so config parsing loads no logger. */
export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
