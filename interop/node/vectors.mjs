#!/usr/bin/env node
// The contract module (contract.mjs) on test vectors, for tests/interop/test_node_contract.py
// to compare with the Python implementation: reads a JSON array of cases on stdin, writes a
// JSON array of answers (same order) on stdout.
//
//   {"encode": "DeviceRecord", "fields": {...}}      -> {"hex": "<canonical encoding>"}
//   {"verify": {"key", "domain", "body", "signature"}} -> {"valid": true|false}  (hex fields)
//   {"sign": {"domain", "body"}}                       -> {"key", "signature"}   (hex)
//   {"display_name": "..."}                            -> {"valid": true|false}
//
// In `fields`, bytes are base64 and 64-bit integers may be decimal strings (protobufjs's
// JSON mapping); enums are names or numbers.

import path from "node:path";
import { fileURLToPath } from "node:url";

import { Contract, Ed25519Key, displayNameDefect, verify } from "./contract.mjs";

const PROTOS = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "protos");

function answer(contract, testCase) {
  if (testCase.encode)
    return { hex: contract.encode(testCase.encode, testCase.fields).toString("hex") };
  if (testCase.verify) {
    const { key, domain, body, signature } = testCase.verify;
    const hex = (value) => Buffer.from(value, "hex");
    return { valid: verify(hex(key), domain, hex(body), hex(signature)) };
  }
  if (testCase.sign) {
    const key = new Ed25519Key();
    const signature = key.sign(testCase.sign.domain, Buffer.from(testCase.sign.body, "hex"));
    return { key: key.raw.toString("hex"), signature: signature.toString("hex") };
  }
  if (typeof testCase.display_name === "string")
    return { valid: displayNameDefect(testCase.display_name) === null };
  throw new Error(`unknown case ${JSON.stringify(testCase)}`);
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const contract = new Contract(process.argv[2] ?? PROTOS);
const cases = JSON.parse(Buffer.concat(chunks).toString("utf8"));
process.stdout.write(JSON.stringify(cases.map((testCase) => answer(contract, testCase))));
