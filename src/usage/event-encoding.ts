import { fromBinary } from "@bufbuild/protobuf";
import { Decision, UsageEventSchema, type UsageEvent } from "../gen/tollgate/usage/v1/usage_pb.js";
import type { UsageRecord } from "./usage-event.js";

/**
 * The protobuf wire encoding of usage events, written by hand because it
 * runs on the sidecar's only thread for every Check: measured about 3 times
 * faster than protobuf-es's reflective toBinary for a typical event. The
 * output is byte for byte what toBinary(toUsageEvent(record)) writes, which
 * a unit test checks, so a field added to usage.proto must be added here too.
 */

const enum WireType {
  Varint = 0,
  LengthDelimited = 2,
}

/** Field numbers of tollgate.usage.v1.UsageEvent. */
const FIELD = {
  sequence: 1,
  timeMs: 2,
  apiId: 3,
  keyId: 4,
  ownerId: 5,
  method: 6,
  path: 7,
  scopes: 8,
  decision: 9,
  reason: 10,
  status: 11,
  cost: 12,
  shadowExceeded: 13,
  overage: 14,
  clientAddress: 15,
  userAgent: 16,
  requestId: 17,
  overageCost: 18,
} as const;

/** Bytes a field needs at most besides its string: a tag and a length of up to 5 bytes each. */
const FIELD_OVERHEAD_BYTES = 10;

/**
 * Encodes a record as a UsageEvent without its sequence, the form the spool
 * stores. Fields are written in field-number order and left out when they
 * hold the default value, as proto3 does. The bytes are a copy, so keeping
 * them does not keep the Check request's larger strings alive the way
 * slices of them do.
 */
export function encodeUsageRecord(record: UsageRecord): Uint8Array {
  const writer = EventWriter.scratch(maxEncodedBytes(record));
  writer.varintField(FIELD.timeMs, record.timeMs);
  writer.stringField(FIELD.apiId, record.apiId);
  writer.stringField(FIELD.keyId, record.keyId);
  writer.stringField(FIELD.ownerId, record.ownerId);
  writer.stringField(FIELD.method, record.method);
  writer.stringField(FIELD.path, record.path);
  for (const scope of record.scopes) writer.stringField(FIELD.scopes, scope, true);
  writer.varintField(FIELD.decision, record.allowed ? Decision.ALLOW : Decision.DENY);
  writer.stringField(FIELD.reason, record.reason);
  writer.varintField(FIELD.status, record.status);
  writer.varintField(FIELD.cost, record.cost);
  writer.varintField(FIELD.shadowExceeded, record.shadowExceeded ? 1 : 0);
  writer.varintField(FIELD.overage, record.overage ? 1 : 0);
  writer.stringField(FIELD.clientAddress, record.clientAddress);
  writer.stringField(FIELD.userAgent, record.userAgent);
  writer.stringField(FIELD.requestId, record.requestId);
  writer.varintField(FIELD.overageCost, record.overageCost);
  return writer.copy();
}

/**
 * Frames a spooled event as one element of EventBatch's `repeated
 * UsageEvent events = 1`: the length, then the sequence field, then the
 * stored bytes. Protobuf accepts fields in any order, so the sequence may
 * come first although its number is the lowest. Returns the bytes that
 * follow the field's tag.
 */
export function frameSpooledEvent(sequence: number, stored: Uint8Array): Uint8Array {
  const eventLength = varintLength(fieldTag(FIELD.sequence, WireType.Varint)) + varintLength(sequence) + stored.length;
  const writer = new EventWriter(varintLength(eventLength) + eventLength);
  writer.varint(eventLength);
  writer.varintField(FIELD.sequence, sequence);
  writer.raw(stored);
  return writer.finish();
}

/** Decodes stored bytes into the wire message with its sequence set, for tests and tools. */
export function decodeSpooledEvent(sequence: number, stored: Uint8Array): UsageEvent {
  const event = fromBinary(UsageEventSchema, stored);
  event.sequence = BigInt(sequence);
  return event;
}

/** A byte buffer sized in advance; the numbers it writes are non-negative safe integers. */
class EventWriter {
  private static shared: EventWriter | undefined;
  private readonly buffer: Buffer;
  private position = 0;

  constructor(capacity: number) {
    this.buffer = Buffer.allocUnsafe(capacity);
  }

  /**
   * Returns an emptied writer kept for reuse, so that encoding an event
   * allocates only its exact-size copy. Safe because encoding is synchronous.
   */
  static scratch(capacity: number): EventWriter {
    let writer = EventWriter.shared;
    if (!writer || writer.buffer.length < capacity) writer = EventWriter.shared = new EventWriter(Math.max(capacity, 16_384));
    writer.position = 0;
    return writer;
  }

  varint(value: number): void {
    while (value >= 0x80) {
      this.buffer[this.position++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    this.buffer[this.position++] = value;
  }

  varintField(field: number, value: number): void {
    if (value === 0) return;
    this.varint(fieldTag(field, WireType.Varint));
    this.varint(value);
  }

  /** Writes a string field; empty strings are left out unless `repeated`, where each element counts. */
  stringField(field: number, value: string, repeated = false): void {
    if (value === "" && !repeated) return;
    this.varint(fieldTag(field, WireType.LengthDelimited));
    const length = Buffer.byteLength(value);
    this.varint(length);
    this.buffer.write(value, this.position);
    this.position += length;
  }

  raw(bytes: Uint8Array): void {
    this.buffer.set(bytes, this.position);
    this.position += bytes.length;
  }

  finish(): Uint8Array {
    return this.buffer.subarray(0, this.position);
  }

  /** Returns a copy of what was written, so the buffer can be reused. */
  copy(): Uint8Array {
    return Buffer.from(this.buffer.subarray(0, this.position));
  }
}

function fieldTag(field: number, wireType: WireType): number {
  return (field << 3) | wireType;
}

function varintLength(value: number): number {
  let length = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    length++;
  }
  return length;
}

/** Returns an upper bound of the encoded size, because UTF-8 takes at most 3 bytes per UTF-16 code unit. */
function maxEncodedBytes(record: UsageRecord): number {
  let characters = record.apiId.length + record.keyId.length + record.ownerId.length + record.method.length + record.path.length;
  characters += record.reason.length + record.clientAddress.length + record.userAgent.length + record.requestId.length;
  for (const scope of record.scopes) characters += scope.length + FIELD_OVERHEAD_BYTES;
  return 3 * characters + 18 * FIELD_OVERHEAD_BYTES;
}
