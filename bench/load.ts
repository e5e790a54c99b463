import { status as grpcStatus } from "@grpc/grpc-js";
import type { CheckChannel, HttpStatus } from "./check-channels.js";

export interface LoadOptions {
  /** Calls are spread over these round-robin, by worker. */
  channels: readonly CheckChannel[];
  /** Encoded CheckRequests, sent in order and repeated from the start when used up. */
  requests: readonly Buffer[];
  /** Calls in flight at once. Each finished call starts the next one. */
  inFlight: number;
  /** No call starts after this much time. */
  durationMs: number;
  /** No call starts after this many. */
  maxCalls: number;
  /** gRPC deadline of each call. */
  callTimeoutMs: number;
}

export interface LoadResult {
  calls: number;
  /** From the first call's start to the last call's end. */
  elapsedMs: number;
  /** Per call, from sending to the decoded response or the error, in microseconds. */
  latenciesUs: Float64Array;
  /** Completed calls by the HTTP status Envoy would act on. */
  statuses: Map<HttpStatus, number>;
  /** Failed calls by gRPC status code name, such as DEADLINE_EXCEEDED. */
  errors: Map<string, number>;
}

/**
 * Drives Check in a closed loop: `inFlight` workers each start a call, wait
 * for it, and start the next, until the time or the call budget runs out.
 * Because the loop is closed, latency includes the wait behind the other
 * in-flight calls, and a slow server lowers the offered load.
 */
export function runLoad(options: LoadOptions): Promise<LoadResult> {
  const { channels, requests, inFlight, durationMs, maxCalls, callTimeoutMs } = options;
  if (requests.length === 0) throw new RangeError("runLoad needs at least one request");
  if (inFlight < 1 || channels.length === 0) throw new RangeError("runLoad needs at least one channel and one call in flight");

  const latenciesUs = new Float64Array(maxCalls);
  const statuses = new Map<HttpStatus, number>();
  const errors = new Map<string, number>();
  const startedMs = performance.now();
  const stopAtMs = startedMs + durationMs;
  let started = 0;
  let workersLeft = inFlight;

  return new Promise((resolve) => {
    const finish = () => {
      resolve({ calls: started, elapsedMs: performance.now() - startedMs, latenciesUs: latenciesUs.subarray(0, started), statuses, errors });
    };

    const next = (worker: number) => {
      if (started >= maxCalls || performance.now() >= stopAtMs) {
        if (--workersLeft === 0) finish();
        return;
      }
      const index = started++;
      const callStartedMs = performance.now();
      channels[worker % channels.length]!.check(requests[index % requests.length]!, callTimeoutMs, (error, status) => {
        latenciesUs[index] = (performance.now() - callStartedMs) * 1000;
        if (error) increment(errors, grpcCodeName(error.code));
        else increment(statuses, status!);
        next(worker);
      });
    };

    for (let worker = 0; worker < inFlight; worker++) next(worker);
  });
}

function increment<K>(counts: Map<K, number>, key: K): void {
  counts.set(key, (counts.get(key) ?? 0) + 1);
}

function grpcCodeName(code: number): string {
  return grpcStatus[code] ?? `code ${code}`;
}
