/** Destination of command output; a test can capture both streams. */
export interface Output {
  out(text: string): void;
  err(text: string): void;
}

export const processOutput: Output = {
  out: (text) => process.stdout.write(text.endsWith("\n") ? text : `${text}\n`),
  err: (text) => process.stderr.write(text.endsWith("\n") ? text : `${text}\n`),
};

/** Prints one JSON document, indented for people and parseable by jq. */
export function printJson(output: Output, value: unknown): void {
  output.out(JSON.stringify(value, null, 2));
}

/** Prints rows under a header, columns padded to the widest cell. */
export function printTable(output: Output, header: string[], rows: string[][]): void {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd();
  output.out([line(header), ...rows.map(line)].join("\n"));
}

export function formatTime(ms: number | null): string {
  return ms === null ? "-" : new Date(ms).toISOString();
}
