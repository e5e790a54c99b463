/** An organization: the owner of APIs. */
export interface OrgRecord {
  id: string;
  name: string;
  createdAtMs: number;
}

export const TOKEN_KINDS = ["admin", "sidecar"] as const;
/** `admin` tokens may call every admin method; `sidecar` tokens may only read the replication stream and send usage events. */
export type TokenKind = (typeof TOKEN_KINDS)[number];

/** A bearer token for the server, stored as the SHA-256 of its secret. */
export interface TokenRecord {
  id: string;
  name: string;
  kind: TokenKind;
  start: string;
  createdAtMs: number;
  revokedAtMs: number | null;
}

/** Author of a change: the token it was made with. */
export interface Actor {
  id: string;
  name: string;
}

/** The actor of changes the server makes itself, such as creating the bootstrap token. */
export const SYSTEM_ACTOR: Actor = { id: "system", name: "system" };

/** One change in the audit log; `before` and `after` never hold secrets or hashes. */
export interface AuditRecord {
  id: string;
  atMs: number;
  actor: Actor;
  /** Such as key.create, key.revoke, plan.update. */
  action: string;
  resourceType: string;
  resourceId: string;
  before: unknown;
  after: unknown;
}
