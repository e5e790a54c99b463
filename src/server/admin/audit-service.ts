import type { ServiceImpl } from "@connectrpc/connect";
import type { AuditService } from "../../gen/tollgate/admin/v1/services_pb.js";
import type { AdminContext } from "./context.js";
import { auditToMessage } from "./convert.js";
import { throwIfInvalid } from "./errors.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import { checkPageSize, checkReference, FieldProblems } from "./validate.js";

/** Position in the audit log: the id of the last event returned. */
interface AuditPosition {
  afterId: string;
}

/** Lists the audit log in the order it was written, optionally for one resource. */
export function createAuditService({ store }: AdminContext): ServiceImpl<typeof AuditService> {
  return {
    async listAuditEvents(request) {
      const problems = new FieldProblems();
      if (request.resourceId !== "") checkReference(problems, "resource_id", request.resourceId);
      const pageSize = checkPageSize(problems, "page_size", request.pageSize);
      const filters = { resourceId: request.resourceId };
      const position = request.pageToken === "" ? undefined : decodePageToken(request.pageToken, filters, isAuditPosition);
      if (request.pageToken !== "" && position === undefined) problems.add("page_token", "invalid, or issued for other filters");
      throwIfInvalid(problems);

      // Fetching one row more than a page shows whether another page follows.
      const events = await store.listAuditEvents({ resourceId: request.resourceId || undefined, afterId: position?.afterId, limit: pageSize + 1 });
      const page = events.slice(0, pageSize);
      const last = page.at(-1);
      return {
        events: page.map(auditToMessage),
        nextPageToken: events.length > pageSize && last ? encodePageToken<AuditPosition>({ afterId: last.id }, filters) : "",
      };
    },
  };
}

function isAuditPosition(value: unknown): value is AuditPosition {
  return value !== null && typeof value === "object" && typeof (value as AuditPosition).afterId === "string";
}
