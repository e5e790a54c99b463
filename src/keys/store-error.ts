export type StoreErrorCode = "not_found" | "already_exists" | "invalid_argument";

/** Raised for a request the store cannot carry out, such as an unknown API. */
export class StoreError extends Error {
  constructor(
    message: string,
    readonly code: StoreErrorCode,
  ) {
    super(message);
    this.name = "StoreError";
  }
}
