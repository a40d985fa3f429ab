// gRPC calls as promises, and refusals as errors that say which call failed, with which
// status code and, when the server sent one, the google.rpc.ErrorInfo reason.

import fs from "node:fs";

import grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";

// google.rpc.Status and the details the server may put in grpc-status-details-bin
// (google/rpc/status.proto, google/rpc/error_details.proto: public and stable).
const details = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: {
          nested: {
            Any: {
              fields: { type_url: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } },
            },
          },
        },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: "int32", id: 1 },
                message: { type: "string", id: 2 },
                details: { rule: "repeated", type: "google.protobuf.Any", id: 3 },
              },
            },
            ErrorInfo: {
              fields: {
                reason: { type: "string", id: 1 },
                domain: { type: "string", id: 2 },
                metadata: { keyType: "string", type: "string", id: 3 },
              },
            },
          },
        },
      },
    },
  },
});
const STATUS = details.lookupType("google.rpc.Status");
const ERROR_INFO = details.lookupType("google.rpc.ErrorInfo");
const CODE_NAMES = Object.fromEntries(
  Object.entries(grpc.status).map(([name, code]) => [code, name]),
);

// HTTP/2 keepalive pings, which a quiet Watch needs to survive NATs (directory.proto's
// header, "Transport"): grpc-js sends none by default. Every 30 s, with or without calls,
// stays well above the server's server.keepalive_min_ping_interval_seconds (10 s); pinging
// more often than that ends the connection with GOAWAY too_many_pings.
const KEEPALIVE = Object.freeze({
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 20_000,
  "grpc.keepalive_permit_without_calls": 1,
});

/** A call the server refused (or that never reached it). */
export class CallError extends Error {
  constructor(call, error) {
    const code = CODE_NAMES[error.code] ?? String(error.code);
    const reason = errorInfoReason(error.metadata);
    super(`${call} failed: ${code}${reason ? ` (${reason})` : ""}: ${error.details}`);
    this.call = call;
    this.code = code;
    this.reason = reason;
    this.details = error.details;
  }
}

function errorInfoReason(metadata) {
  const [bin] = metadata?.get("grpc-status-details-bin") ?? [];
  if (!bin) return "";
  const status = STATUS.decode(bin);
  const info = status.details.find((any) => any.type_url.endsWith("/google.rpc.ErrorInfo"));
  return info ? ERROR_INFO.decode(info.value).reason : "";
}

/** Calls of one target, with the bearer token once logged in. */
export class Caller {
  constructor(contract, target, { caFile, deadlineMs }) {
    const credentials = caFile
      ? grpc.credentials.createSsl(fs.readFileSync(caFile))
      : grpc.credentials.createInsecure();
    // One channel (one HTTP/2 connection) for every service: a node with --workers
    // guarantees a client reads its own writes on its connection, not across connections.
    this.channel = new grpc.Channel(target, credentials, KEEPALIVE);
    const { AccountService, SessionService, PresenceService, SearchService } = contract.services;
    const options = { channelOverride: this.channel };
    this.clients = {
      account: new AccountService(target, credentials, options),
      session: new SessionService(target, credentials, options),
      presence: new PresenceService(target, credentials, options),
      search: new SearchService(target, credentials, options),
    };
    this.deadlineMs = deadlineMs;
    this.token = "";
  }

  metadata(authenticated) {
    const metadata = new grpc.Metadata();
    if (authenticated && this.token) metadata.set("authorization", `Bearer ${this.token}`);
    return metadata;
  }

  /** One unary call: `service.method(request)`, with the token unless told otherwise. */
  unary(service, method, request, { authenticated = true } = {}) {
    const client = this.clients[service];
    const deadline = new Date(Date.now() + this.deadlineMs);
    return new Promise((resolve, reject) => {
      client[method](request, this.metadata(authenticated), { deadline }, (error, response) =>
        error ? reject(new CallError(method, error)) : resolve(response),
      );
    });
  }

  /** A call that needs no session (creating an account, logging in, reading an account). */
  anonymous(service, method, request) {
    return this.unary(service, method, request, { authenticated: false });
  }

  /** A server stream: its messages through `onMessage`, its end (or refusal) through `onEnd`. */
  stream(service, method, request, onMessage, onEnd) {
    const call = this.clients[service][method](request, this.metadata(true));
    call.on("data", onMessage);
    call.on("error", (error) => {
      if (error.code !== grpc.status.CANCELLED) onEnd(new CallError(method, error));
    });
    call.on("end", () => onEnd(null));
    return call;
  }

  close() {
    this.channel.close();
  }
}

/** The refusal a promise ends with: its status code name (and reason), or fails if it succeeds. */
export async function refusal(what, promise) {
  try {
    await promise;
  } catch (error) {
    if (error instanceof CallError)
      return { code: error.code, reason: error.reason, message: error.details };
    throw error;
  }
  throw new Error(`${what} was accepted, but must be refused`);
}
