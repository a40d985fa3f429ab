// The supernode's public contract, read from protos/supernode/v1 at run time: the gRPC
// services (through @grpc/proto-loader, no generated code), the signed bodies and their
// Ed25519 signatures (Node's own crypto), as the protos' comments describe them.

import crypto from "node:crypto";
import path from "node:path";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

export const PROTO_FILES = ["supernode/v1/directory.proto", "supernode/v1/search.proto"];

// The domain-separation strings of the protos' signature comments: a signature covers
// "<domain>" 0x00 <the exact bytes of the signed body>.
export const DOMAINS = Object.freeze({
  createAccount: "supernode.v1.CreateAccount",
  login: "supernode.v1.Login",
  deviceRecord: "supernode.v1.DeviceRecord",
  keyRotation: "supernode.v1.KeyRotation",
  keyRotationNewKey: "supernode.v1.KeyRotation.NewKey",
});

/** The contract loaded from `protosDir` (the folder holding supernode/v1/). */
export class Contract {
  constructor(protosDir) {
    const definition = protoLoader.loadSync(PROTO_FILES, {
      includeDirs: [protosDir],
      keepCase: true, // field names exactly as in the protos
      longs: Number, // int64 milliseconds fit a double for the next 285,000 years
      enums: String,
      defaults: true,
      arrays: true,
      oneofs: true,
    });
    this.services = grpc.loadPackageDefinition(definition).supernode.v1;
    // The signed bodies are encoded and decoded with protobufjs, the library proto-loader
    // itself builds on, from the same files.
    this.root = new protobuf.Root();
    this.root.resolvePath = (_origin, target) => path.join(protosDir, target);
    this.root.loadSync(PROTO_FILES, { keepCase: true });
  }

  type(name) {
    return this.root.lookupType(`supernode.v1.${name}`);
  }

  /**
   * The canonical encoding of a signed body (directory.proto's header): fields in
   * field-number order and no field at its proto3 default (0, "", false, empty bytes, the
   * enum's 0 value, an empty repeated field). protobufjs writes a field that is set, even
   * to its default, so those are deleted first. Also how a served Account is re-encoded
   * to check its creation signature.
   */
  encode(name, fields) {
    const type = this.type(name);
    const message = type.fromObject(fields);
    return Buffer.from(type.encode(withoutDefaults(type, message)).finish());
  }

  decode(name, bytes) {
    const type = this.type(name);
    return type.toObject(type.decode(bytes), {
      longs: Number,
      enums: String,
      bytes: Buffer,
      defaults: true,
      arrays: true,
    });
  }
}

function isDefault(field, value) {
  if (value === null || value === undefined) return true;
  if (protobuf.util.Long && protobuf.util.Long.isLong(value)) return value.isZero();
  if (value instanceof Uint8Array) return value.length === 0;
  return value === 0 || value === "" || value === false;
}

function withoutDefaults(type, message) {
  for (const field of type.fieldsArray) {
    field.resolve();
    const value = message[field.name];
    if (field.repeated) {
      if (!value || value.length === 0) delete message[field.name];
      else if (field.resolvedType instanceof protobuf.Type)
        value.forEach((item) => withoutDefaults(field.resolvedType, item));
    } else if (field.resolvedType instanceof protobuf.Type) {
      if (value) withoutDefaults(field.resolvedType, value);
      else delete message[field.name];
    } else if (isDefault(field, value)) {
      delete message[field.name];
    }
  }
  return message;
}

// Account.display_name: any character of General Category C or Z but U+0020 SPACE is refused.
const UNPRINTABLE = /[\p{C}\p{Z}]/u;
export const MAX_DISPLAY_NAME_CHARS = 64; // limits.max_display_name_chars, the default

/**
 * Why `name` is not a display name the server accepts (null: it is): over the limit in
 * code points (not UTF-16 units), or holding an unprintable character. Node's Unicode may
 * be newer than the server's: a character it knows may still be unassigned there.
 */
export function displayNameDefect(name, maxChars = MAX_DISPLAY_NAME_CHARS) {
  const chars = [...name];
  if (chars.length > maxChars) return `${chars.length} characters, at most ${maxChars}`;
  const bad = chars.find((ch) => ch !== " " && UNPRINTABLE.test(ch));
  if (bad !== undefined) return `U+${bad.codePointAt(0).toString(16).toUpperCase()} is unprintable`;
  return null;
}

/** "<domain>" 0x00 body: what an Ed25519 signature covers. */
export function signingPayload(domain, body) {
  return Buffer.concat([Buffer.from(domain, "utf8"), Buffer.from([0]), body]);
}

/** An Ed25519 key pair of Node's crypto, with its raw 32-byte public key. */
export class Ed25519Key {
  constructor() {
    const { publicKey, privateKey } = crypto.generateKeyPairSync("ed25519");
    this.privateKey = privateKey;
    this.raw = Buffer.from(publicKey.export({ format: "jwk" }).x, "base64url");
  }

  sign(domain, body) {
    return crypto.sign(null, signingPayload(domain, body), this.privateKey);
  }
}

// Strict Ed25519 (the rules of "Taming the many EdDSAs" and ZIP 215's strict mode), on top
// of what OpenSSL checks: OpenSSL verifies a small-order key with the "universal" signature
// R = identity, S = 0 for every message. A point's encoding is refused when its y (the low
// 255 bits, little endian) is not below p, or is the y of one of the 8 small-order points.
const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n; // the group order
const Y8 = 0x7a03ac9277fdc74ec6cc392cfa53202a0f67100d760b3cba4fd84d3d706a17c7n;
const SMALL_ORDER_Y = new Set([0n, 1n, P - 1n, Y8, P - Y8]);

function littleEndian(bytes) {
  return BigInt(`0x${Buffer.from(bytes).reverse().toString("hex") || "0"}`);
}

function strictPoint(encoding) {
  const y = littleEndian(encoding) & ((1n << 255n) - 1n);
  return y < P && !SMALL_ORDER_Y.has(y);
}

/** A usable Ed25519 public key: 32 bytes, a canonical encoding, not of small order. */
export function strictKey(rawKey) {
  return Buffer.isBuffer(rawKey) && rawKey.length === 32 && strictPoint(rawKey);
}

/** A signature with one encoding: 64 bytes, R strict as a key, S below the group order. */
export function strictSignature(signature) {
  return (
    Buffer.isBuffer(signature) &&
    signature.length === 64 &&
    strictPoint(signature.subarray(0, 32)) &&
    littleEndian(signature.subarray(32)) < L
  );
}

/** True when `signature` is the Ed25519 signature by raw key `rawKey` of `body` for `domain`. */
export function verify(rawKey, domain, body, signature) {
  if (!strictKey(rawKey) || !strictSignature(signature)) return false;
  try {
    const key = crypto.createPublicKey({
      key: { kty: "OKP", crv: "Ed25519", x: rawKey.toString("base64url") },
      format: "jwk",
    });
    return crypto.verify(null, signingPayload(domain, body), key, signature);
  } catch {
    return false; // not a point of the curve at all
  }
}

/**
 * True when `signature` is the CreateAccount signature of `account` as served (decoded):
 * by its account_key, over the account re-encoded canonically (GetAccountResponse.
 * account_signature), so the holder of that key created this handle.
 */
export function accountSigned(contract, account, signature) {
  const body = contract.encode("Account", account);
  return verify(account.account_key, DOMAINS.createAccount, body, signature);
}

/**
 * The key an account signs with now: account.account_key, followed along its rotations
 * (oldest first; each names the key before it, is signed by it and by the new key, and
 * holds its place 1, 2, ... in the chain). Throws when the chain does not verify.
 */
export function currentKey(contract, account, rotations) {
  let key = account.account_key;
  rotations.forEach((signed, index) => {
    const rotation = contract.decode("KeyRotation", signed.rotation);
    const place = `${account.handle}'s key rotation ${index + 1}`;
    if (rotation.handle !== account.handle) throw new Error(`${place} names ${rotation.handle}`);
    if (rotation.seq !== index + 1) throw new Error(`${place} has seq ${rotation.seq}`);
    if (!rotation.old_key.equals(key)) throw new Error(`${place} does not follow the chain`);
    if (!verify(key, DOMAINS.keyRotation, signed.rotation, signed.signature))
      throw new Error(`${place}: the old key's signature does not verify`);
    if (
      !verify(
        rotation.new_key,
        DOMAINS.keyRotationNewKey,
        signed.rotation,
        signed.new_key_signature,
      )
    )
      throw new Error(`${place}: the new key's signature does not verify`);
    key = rotation.new_key;
  });
  return key;
}
