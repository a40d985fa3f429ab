#!/usr/bin/env node
// A supernode client in Node.js, written from the comments of protos/supernode/v1 alone:
// it creates an account, logs in, registers a device, looks up, looks up many, searches
// and watches, verifying every signature the server hands it, and checks that the server
// refuses what the protos say it refuses. tests/interop/test_node_client.py drives it
// against a real supernode, together with the Python SDK.
//
//   node client.mjs --target 127.0.0.1:7700 --handle node-1 --peer alice \
//       --peer-device phone --expect-device tablet [--ca sdk-ca.pem]
//
// Progress goes to stdout as JSON lines: {"step": "watching"} once the watch is open (the
// peer's app may then register --expect-device, which the watch must see), then
// {"summary": {...}}. Any failure ends the process with exit code 1 and one line on
// stderr saying what failed; a bad command line with exit code 2.

import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { Caller, refusal } from "./calls.mjs";
import {
  Contract,
  DOMAINS,
  Ed25519Key,
  accountSigned,
  currentKey,
  displayNameDefect,
  verify,
} from "./contract.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const USAGE =
  "usage: node client.mjs --target HOST:PORT --handle H --peer P --peer-device D " +
  "--expect-device E [--ca CA_FILE] [--protos DIR] [--timeout-ms N] [--deadline-ms N]";
const HELP = `${USAGE}

Creates account H (its key made here), logs in, registers a device, looks H and P up,
searches, then watches P until P's device E comes online (P must exist with device D
live), unregisters and logs out; every signature verified, every refusal the protos name
checked. --ca: a PEM CA file for TLS (plaintext without it). Prints JSON lines on stdout;
exit code 1 with one line on stderr on any failure.`;
const DEVICE_ID = "node-laptop";

function options() {
  const { values } = parseArgs({
    options: {
      target: { type: "string" },
      ca: { type: "string" },
      protos: { type: "string", default: path.join(HERE, "..", "..", "protos") },
      handle: { type: "string" },
      peer: { type: "string" },
      "peer-device": { type: "string" },
      "expect-device": { type: "string" },
      "timeout-ms": { type: "string", default: "20000" },
      "deadline-ms": { type: "string", default: "5000" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return null;
  for (const name of ["target", "handle", "peer", "peer-device", "expect-device"])
    if (!values[name]) throw new UsageError(`--${name} is required`);
  return values;
}

class UsageError extends Error {}

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

function emit(line) {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/**
 * Fails unless `signature` is `account`'s creation signature. Every account this client
 * meets was created with its signature kept, so an empty one fails too.
 */
function checkAccount(contract, account, signature) {
  check(
    accountSigned(contract, account, signature),
    `${account.handle}'s account verifies with its CreateAccount signature`,
  );
}

/**
 * The devices of a LookupResponse, each signature verified with the account's current key
 * (the account itself verified with its creation signature first).
 */
function verifiedDevices(contract, found) {
  checkAccount(contract, found.account, found.account_signature);
  const key = currentKey(contract, found.account, found.rotations);
  return found.devices.map((device) => {
    const { record, signature } = device.signed;
    check(
      verify(key, DOMAINS.deviceRecord, record, signature),
      `${found.account.handle}'s device record signature verifies with its account key`,
    );
    const decoded = contract.decode("DeviceRecord", record);
    check(decoded.handle === found.account.handle, "a device record names its account's handle");
    return { ...decoded, expires_at_ms: device.expires_at_ms };
  });
}

class Scenario {
  constructor(contract, caller, args) {
    this.contract = contract;
    this.caller = caller;
    this.args = args;
    this.key = new Ed25519Key();
    this.transportKey = new Ed25519Key().raw;
    this.summary = { handle: args.handle, account_key: this.key.raw.toString("hex"), refusals: {} };
  }

  async refused(name, what, promise) {
    this.summary.refusals[name] = await refusal(what, promise);
  }

  signedAccount(key, fields) {
    const account = this.contract.encode("Account", fields);
    return { account, signature: key.sign(DOMAINS.createAccount, account) };
  }

  async createAccount() {
    const { handle } = this.args;
    const fields = {
      handle,
      account_key: this.key.raw,
      display_name: `Nodé Interop ${handle}`, // non-ASCII: UTF-8 in the signed bytes
      discoverable: true,
      created_at_ms: Date.now(),
    };
    const defect = displayNameDefect(fields.display_name);
    check(defect === null, `the display name is one the server accepts (${defect})`);
    const created = await this.caller.anonymous(
      "account",
      "CreateAccount",
      this.signedAccount(this.key, fields),
    );
    check(created.account.handle === handle, "CreateAccount answers the account");
    check(created.account.account_key.equals(this.key.raw), "CreateAccount answers the key");
    checkAccount(this.contract, created.account, created.account_signature);
    const got = await this.caller.anonymous("account", "GetAccount", { handle });
    checkAccount(this.contract, got.account, got.account_signature);
    check(got.account.display_name === fields.display_name, "GetAccount serves the display name");
    check(got.rotations.length === 0, "a new account has no key rotations");
    this.summary.display_name = got.account.display_name;

    const other = new Ed25519Key();
    await this.refused(
      "handle_taken",
      "CreateAccount of a taken handle",
      this.caller.anonymous(
        "account",
        "CreateAccount",
        this.signedAccount(other, { ...fields, account_key: other.raw }),
      ),
    );
    await this.refused(
      "forged_account",
      "CreateAccount signed by a key other than account_key",
      this.caller.anonymous(
        "account",
        "CreateAccount",
        this.signedAccount(other, {
          ...fields,
          handle: `${handle}-f`,
          account_key: new Ed25519Key().raw,
        }),
      ),
    );
    // The same account with an explicit `discoverable = false` (field 4, varint 0): valid
    // protobuf that decodes to the same message, but not the canonical encoding.
    const loose = Buffer.concat([
      this.contract.encode("Account", {
        ...fields,
        handle: `${handle}-x`,
        account_key: other.raw,
        discoverable: false,
      }),
      Buffer.from([4 << 3, 0]),
    ]);
    await this.refused(
      "non_canonical_account",
      "CreateAccount with a non-canonical encoding",
      this.caller.anonymous("account", "CreateAccount", {
        account: loose,
        signature: other.sign(DOMAINS.createAccount, loose),
      }),
    );
  }

  async login() {
    const { handle } = this.args;
    await this.refused(
      "no_token",
      "Lookup without a bearer token",
      this.caller.anonymous("presence", "Lookup", { handle }),
    );
    const first = await this.caller.anonymous("session", "GetChallenge", { handle });
    await this.refused(
      "forged_login",
      "Login with a challenge signed by another key",
      this.caller.anonymous("session", "Login", {
        handle,
        challenge: first.challenge,
        signature: new Ed25519Key().sign(DOMAINS.login, first.challenge),
      }),
    );
    const { challenge } = await this.caller.anonymous("session", "GetChallenge", { handle });
    const signature = this.key.sign(DOMAINS.login, challenge);
    const session = await this.caller.anonymous("session", "Login", {
      handle,
      challenge,
      signature,
    });
    check(
      session.token.length > 0 && session.expires_at_ms > Date.now(),
      "Login grants a live token",
    );
    this.caller.token = session.token;
    await this.refused(
      "challenge_reused",
      "Login with a challenge already used",
      this.caller.anonymous("session", "Login", { handle, challenge, signature }),
    );
  }

  /**
   * The seq of the device's next record: strictly above every seq used before for it
   * (the server keeps the highest, even past an unregister), and at least the wall clock in
   * milliseconds, so a client that restarts with no saved state still goes up.
   */
  nextSeq() {
    this.lastSeq = Math.max((this.lastSeq ?? 0) + 1, Date.now());
    return this.lastSeq;
  }

  signedRecord(seq, { key = this.key, ...fields } = {}) {
    const record = this.contract.encode("DeviceRecord", {
      handle: this.args.handle,
      device_id: DEVICE_ID,
      seq,
      issued_at_ms: Date.now(),
      ttl_seconds: 0, // the server's default lease
      endpoints: [
        {
          address: "192.0.2.10",
          port: 4433,
          protocol: "TRANSPORT_PROTOCOL_UDP",
          type: "CANDIDATE_TYPE_HOST",
        },
        {
          address: "2001:db8::10",
          port: 4433,
          protocol: "TRANSPORT_PROTOCOL_UDP",
          type: "CANDIDATE_TYPE_HOST",
        },
      ],
      transport_key: this.transportKey,
      status: "DEVICE_STATUS_ONLINE",
      capabilities: ["interop"],
      ...fields,
    });
    return { signed: { record, signature: key.sign(DOMAINS.deviceRecord, record) } };
  }

  register(request) {
    return this.caller.unary("presence", "RegisterDevice", request);
  }

  async registerDevice() {
    const first = await this.register(this.signedRecord(this.nextSeq()));
    check(first.ttl_seconds > 0, "ttl_seconds 0 asks for the server's default lease");
    check(first.expires_at_ms > Date.now(), "the lease ends in the future");
    this.seq = this.nextSeq();
    const renewed = await this.register(this.signedRecord(this.seq));
    this.summary.registered = {
      device_id: DEVICE_ID,
      seq: this.seq,
      ttl_seconds: renewed.ttl_seconds,
    };
    this.summary.transport_key = this.transportKey.toString("hex");

    await this.refused(
      "replayed_seq",
      "RegisterDevice with a seq not above the last",
      this.register(this.signedRecord(this.seq)),
    );
    await this.refused(
      "forged_record",
      "RegisterDevice signed by another key",
      this.register(this.signedRecord(this.nextSeq(), { key: new Ed25519Key() })),
    );
    await this.refused(
      "record_of_another_handle",
      "RegisterDevice of a record naming another account",
      this.register(this.signedRecord(this.nextSeq(), { handle: this.args.peer })),
    );
    await this.refused(
      "unspecified_status",
      "RegisterDevice with DEVICE_STATUS_UNSPECIFIED",
      this.register(this.signedRecord(this.nextSeq(), { status: "DEVICE_STATUS_UNSPECIFIED" })),
    );
  }

  async lookUp() {
    const { handle, peer } = this.args;
    const own = verifiedDevices(
      this.contract,
      await this.caller.unary("presence", "Lookup", { handle }),
    );
    check(
      own.length === 1 && own[0].device_id === DEVICE_ID && own[0].seq === this.seq,
      "Lookup serves the renewed device",
    );
    check(own[0].transport_key.equals(this.transportKey), "Lookup serves the transport key");
    check(
      own[0].endpoints.length === 2 && own[0].status === "DEVICE_STATUS_ONLINE",
      "Lookup serves the record",
    );
    const found = await this.caller.unary("presence", "Lookup", {
      handle: peer,
      consistency: "CONSISTENCY_QUORUM",
    });
    const devices = verifiedDevices(this.contract, found);
    const peerDevice = this.args["peer-device"];
    check(
      devices.some((d) => d.device_id === peerDevice),
      `Lookup serves ${peer}'s ${peerDevice}`,
    );
    this.summary.lookup_peer = {
      display_name: found.account.display_name,
      devices: devices.map((d) => d.device_id),
      transport_keys: devices.map((d) => d.transport_key.toString("hex")),
    };
    const missing = `${handle}-nobody`;
    await this.refused(
      "lookup_unknown",
      "Lookup of a handle with no account",
      this.caller.unary("presence", "Lookup", { handle: missing }),
    );
    this.summary.lookup_many = await this.lookUpMany([handle, peer, peer, missing]);
  }

  /** LookupMany until every handle is answered (a partial answer lists the rest in unanswered). */
  async lookUpMany(handles) {
    const results = [];
    const notFound = [];
    let asked = handles;
    for (let round = 0; asked.length > 0; round += 1) {
      check(round < handles.length, "every LookupMany answer settles at least one handle");
      const answer = await this.caller.unary("presence", "LookupMany", { handles: asked });
      for (const found of answer.results)
        results.push({
          handle: found.account.handle,
          devices: verifiedDevices(this.contract, found).map((d) => d.device_id),
        });
      notFound.push(...answer.not_found);
      asked = answer.unanswered;
    }
    return { results, not_found: notFound };
  }

  async search() {
    const { handle } = this.args;
    const byHandle = await this.caller.unary("search", "Search", { query: handle, limit: 5 });
    const byWord = await this.caller.unary("search", "Search", { query: "node", limit: 50 }); // "Nodé"
    for (const answer of [byHandle, byWord])
      answer.accounts.forEach((account, i) =>
        checkAccount(this.contract, account, answer.account_signatures[i]),
      );
    this.summary.search = {
      by_handle: byHandle.accounts.map((a) => a.handle),
      by_word: byWord.accounts.map((a) => a.handle),
    };
  }

  /** Watch the peer: the snapshot, then the ONLINE change of the device its app registers. */
  async watch() {
    const { peer } = this.args;
    const expected = this.args["expect-device"];
    const seen = { snapshot: null, change: null };
    let peerKey = null;
    await new Promise((resolve, reject) => {
      const call = this.caller.stream(
        "presence",
        "Watch",
        { handles: [peer] },
        (event) => {
          try {
            if (event.event === "snapshot") {
              const [found] = event.snapshot.handles;
              check(
                found && found.account.handle === peer,
                "the snapshot holds the watched handle",
              );
              peerKey = currentKey(this.contract, found.account, found.rotations);
              seen.snapshot = verifiedDevices(this.contract, found).map((d) => d.device_id);
              check(seen.snapshot.includes(this.args["peer-device"]), "the snapshot is live");
              check(event.epoch !== "" && !event.resumed, "a fresh snapshot has a position");
              emit({ step: "watching" });
            } else if (event.event === "change") {
              check(seen.snapshot !== null, "a snapshot comes first");
              const { change } = event;
              if (change.device_id !== expected || change.kind !== "CHANGE_KIND_ONLINE") return;
              const { record, signature } = change.device.signed;
              check(
                verify(peerKey, DOMAINS.deviceRecord, record, signature),
                "the change's record verifies",
              );
              const decoded = this.contract.decode("DeviceRecord", record);
              check(
                decoded.device_id === expected && decoded.handle === peer,
                "the change carries its record",
              );
              seen.change = {
                handle: change.handle,
                device_id: change.device_id,
                kind: change.kind,
                revision: event.revision,
              };
              call.cancel();
              resolve();
            }
          } catch (error) {
            call.cancel();
            reject(error);
          }
        },
        (error) => reject(error ?? new Error("the watch ended before the expected change")),
      );
    });
    this.summary.watch = seen;
  }

  async finish() {
    const removed = await this.caller.unary("presence", "UnregisterDevice", {
      device_id: DEVICE_ID,
      seq: this.lastSeq,
    });
    check(removed.removed, "UnregisterDevice removes the live device");
    this.summary.unregistered = true;
    await this.caller.unary("session", "Logout", {});
    await this.refused(
      "after_logout",
      "Lookup with a token that logged out",
      this.caller.unary("presence", "Lookup", { handle: this.args.handle }),
    );
  }
}

async function main() {
  let args;
  try {
    args = options();
  } catch (error) {
    process.stderr.write(`interop client: ${error.message}\n${USAGE}\n`);
    return 2;
  }
  if (args === null) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const timeoutMs = Number(args["timeout-ms"]);
  const timer = setTimeout(() => {
    process.stderr.write(`interop client: not done within ${timeoutMs} ms\n`);
    process.exit(1);
  }, timeoutMs);
  let caller = null;
  let scenario = null;
  try {
    const contract = new Contract(args.protos);
    caller = new Caller(contract, args.target, {
      caFile: args.ca,
      deadlineMs: Number(args["deadline-ms"]),
    });
    scenario = new Scenario(contract, caller, args);
    await scenario.createAccount();
    await scenario.login();
    await scenario.registerDevice();
    await scenario.lookUp();
    await scenario.search();
    await scenario.watch();
    await scenario.finish();
  } catch (error) {
    process.stderr.write(`interop client: ${error.message}\n`);
    return 1;
  } finally {
    clearTimeout(timer);
    caller?.close();
  }
  emit({ summary: scenario.summary });
  return 0;
}

process.exitCode = await main();
