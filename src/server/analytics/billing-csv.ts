/** Columns of the billing CSV, in order. */
export const BILLING_CSV_HEADER = [
  "period_start",
  "period_end",
  "owner_id",
  "api_id",
  "api_name",
  "requests",
  "cost_units",
  "overage_requests",
  "overage_cost_units",
] as const;

/** One row of the billing CSV; times are ISO 8601 in UTC. */
export type BillingCsvRow = Record<(typeof BILLING_CSV_HEADER)[number], string | number | bigint>;

/** Formats billing lines as CSV under a header row (RFC 4180: CRLF line ends, quoted fields where needed). */
export function formatBillingCsv(rows: readonly BillingCsvRow[]): string {
  return formatCsv(BILLING_CSV_HEADER, rows.map((row) => BILLING_CSV_HEADER.map((column) => row[column])));
}

/**
 * Formats a table as RFC 4180 CSV. A field that contains a comma, a double
 * quote, a CR or an LF is enclosed in double quotes, with each double quote
 * doubled. Every record, the last included, ends with CRLF.
 *
 * NOTE: fields are written as they are. A spreadsheet may read a field that
 * starts with "=", "+", "-" or "@" as a formula, so open untrusted owner ids
 * as text.
 */
export function formatCsv(header: readonly string[], rows: readonly (readonly (string | number | bigint)[])[]): string {
  return [header, ...rows].map((fields) => fields.map((field) => csvField(String(field))).join(",") + "\r\n").join("");
}

function csvField(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
