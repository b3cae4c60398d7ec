// Decrypts a SOPS file with the npm package `sops-age` (a SOPS decoder of
// its own, not Plumbline's), and checks the file's MAC as SOPS 3 computes
// it (sops.go, Tree.Encrypt), with node's OpenSSL: sops-age does not.
//
//   NODE_TOOLS=target/test-tools/node node sops_check.cjs FILE AGE_KEY_FILE DATA_KEY_HEX
//
// Prints the decrypted document as JSON; exits 1 if the MAC does not match.
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");
const { createRequire } = require("module");

const modules = createRequire(path.join(process.env.NODE_TOOLS, "node_modules", "here.js"));
const { decryptSops } = modules("sops-age");
const YAML = modules("yaml");

const [file, keyFile, dataKeyHex] = process.argv.slice(2);
const text = fs.readFileSync(file, "utf8");
const secretKey = fs
  .readFileSync(keyFile, "utf8")
  .split("\n")
  .find((line) => line.startsWith("AGE-SECRET-KEY-"));
const dataKey = Buffer.from(dataKeyHex, "hex");

// An ENC[AES256_GCM,…] value's plaintext bytes, its path as the AAD.
function open(value, aad) {
  const m = /^ENC\[AES256_GCM,data:(.*),iv:(.*),tag:(.*),type:(.*)\]$/.exec(value);
  if (!m) throw new Error(`not an encrypted value: ${value}`);
  const decipher = crypto.createDecipheriv("aes-256-gcm", dataKey, Buffer.from(m[2], "base64"));
  decipher.setAAD(Buffer.from(aad));
  decipher.setAuthTag(Buffer.from(m[3], "base64"));
  return Buffer.concat([decipher.update(Buffer.from(m[1], "base64")), decipher.final()]);
}

// SOPS's ToBytes for a value as written.
function bytes(value) {
  if (typeof value === "boolean") return Buffer.from(value ? "True" : "False");
  return Buffer.from(String(value));
}

const hash = crypto.createHash("sha512");
function walk(value, keys) {
  if (value === null || value === undefined) return;
  if (Array.isArray(value)) return value.forEach((item) => walk(item, keys));
  if (typeof value === "object") {
    for (const [key, inner] of Object.entries(value)) walk(inner, [...keys, key]);
    return;
  }
  if (typeof value === "string" && value.startsWith("ENC[AES256_GCM,")) {
    hash.update(open(value, keys.join(":") + ":"));
  } else {
    hash.update(bytes(value));
  }
}

(async () => {
  const document = YAML.parse(text);
  const { sops, ...tree } = document;
  walk(tree, []);
  const mac = open(sops.mac, sops.lastmodified).toString();
  const computed = hash.digest("hex").toUpperCase();
  if (mac !== computed) {
    console.error(`MAC mismatch: the file says ${mac}, the values give ${computed}`);
    process.exit(1);
  }
  const plain = await decryptSops(text, { secretKey, fileType: "yaml" });
  console.log(JSON.stringify(plain));
})().catch((error) => {
  console.error(String(error && error.stack ? error.stack : error));
  process.exit(1);
});
