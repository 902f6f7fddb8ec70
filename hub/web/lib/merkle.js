// RFC 9162 §2.1 Merkle tree hashes and C2SP signed-note checkpoints, recomputed in the browser so
// the owner's device checks the hub's audit log instead of trusting it (PROTOCOL.md §5).

import { b64, concat, unb64, utf8 } from "./b64.js";

const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));

export const leafHash = (entryBytes) => sha256(concat(new Uint8Array([0]), entryBytes));
const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));

// MTH(D[lo:hi]): split at the largest power of two smaller than n (RFC 9162 §2.1.1).
export async function treeHash(leaves, lo = 0, hi = leaves.length) {
  const n = hi - lo;
  if (n === 0) return sha256(new Uint8Array(0));
  if (n === 1) return leaves[lo];
  let k = 1;
  while (k * 2 < n) k *= 2;
  return nodeHash(await treeHash(leaves, lo, lo + k), await treeHash(leaves, lo + k, hi));
}

export function sameBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// c2sp.org/signed-note + tlog-checkpoint: "<origin>\n<size>\n<b64 root>\n" then "\n— <name> <b64(keyid||sig)>\n".
export function parseCheckpoint(note) {
  const split = note.indexOf("\n\n");
  if (split < 0) throw new Error("checkpoint is not a signed note");
  const text = note.slice(0, split + 1);
  const [origin, size, root] = text.split("\n");
  if (!/^(0|[1-9][0-9]*)$/.test(size)) throw new Error("bad checkpoint size");
  const sigs = note.slice(split + 2).split("\n").filter(Boolean).map((line) => {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new Error("bad signature line");
    return { name: m[1], bytes: unb64(m[2]) };
  });
  return { text, origin, size: Number(size), root: unb64(root), rootB64: root, sigs };
}

// The hub's note key id: SHA-256(name || 0x0A || 0x01 || raw public key)[:4].
async function noteKeyId(name, rawKey) {
  return (await sha256(concat(utf8(name), new Uint8Array([0x0a, 0x01]), rawKey))).slice(0, 4);
}

export async function verifyCheckpoint(cp, hubJwk, hubId) {
  const origin = `camhub/${hubId}`;
  if (cp.origin !== origin) throw new Error(`checkpoint origin is ${cp.origin}, expected ${origin}`);
  const raw = unb64(hubJwk.x.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (hubJwk.x.length % 4)) % 4));
  const key = await crypto.subtle.importKey("jwk", { kty: "OKP", crv: "Ed25519", x: hubJwk.x }, { name: "Ed25519" }, false, ["verify"]);
  const want = await noteKeyId(origin, raw);
  const mine = cp.sigs.filter((s) => s.name === origin && sameBytes(s.bytes.slice(0, 4), want));
  if (!mine.length) throw new Error("no signature by this hub's key");
  for (const s of mine) {
    if (!(await crypto.subtle.verify({ name: "Ed25519" }, key, s.bytes.slice(4), utf8(cp.text)))) {
      throw new Error("checkpoint signature does not verify");
    }
  }
  return true;
}

export { b64 };

// RFC 9162 §2.1.4.2: verify that the tree of `second` leaves (root secondHash) extends the tree of
// `first` leaves (root firstHash), given the consistency proof `path` (list of 32-byte hashes).
export async function verifyConsistency(first, second, firstHash, secondHash, path) {
  if (first === second) return path.length === 0 && sameBytes(firstHash, secondHash);
  if (first < 1 || first > second || path.length === 0) return false;
  let proof = path;
  if ((first & (first - 1)) === 0) proof = [firstHash, ...path]; // step 2: first is a power of 2
  let fn = first - 1;
  let sn = second - 1;
  while (fn & 1) { // step 4
    fn >>= 1;
    sn >>= 1;
  }
  let fr = proof[0];
  let sr = proof[0];
  for (const c of proof.slice(1)) {
    if (sn === 0) return false;
    if (fn & 1 || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (!(fn & 1)) {
        while (!(fn & 1) && fn !== 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sameBytes(fr, firstHash) && sameBytes(sr, secondHash) && sn === 0;
}

// RFC 9162 §2.1.3.2: verify that the leaf with hash `leaf` at `index` is in the tree of `size` leaves
// whose root is `root`, given the inclusion proof `path` (list of 32-byte hashes, leaf to root).
export async function verifyInclusion(index, size, leaf, path, root) {
  if (index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of path) {
    if (sn === 0) return false;
    if (fn & 1 || fn === sn) {
      r = await nodeHash(p, r);
      if (!(fn & 1)) {
        while (!(fn & 1) && fn !== 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn === 0 && sameBytes(r, root);
}
