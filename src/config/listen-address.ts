/** A `HOST:PORT` to listen on; IPv6 hosts in brackets, as in `[::1]:9191`. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses `HOST:PORT`. Port 0 lets the system pick a free one. */
export function parseListenAddress(text: string): ListenAddress | string {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(text.trim());
  if (!match) return `"${text}" is not HOST:PORT (for example 127.0.0.1:9191 or [::1]:9191)`;
  const port = Number(match[3]);
  if (port > 65535) return `port ${port} in "${text}" is above 65535`;
  return { host: match[1] ?? match[2]!, port };
}

/** Formats an address for gRPC and logs, bracketing IPv6 hosts. */
export function formatListenAddress({ host, port }: ListenAddress): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
