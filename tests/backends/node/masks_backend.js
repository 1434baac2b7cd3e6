#!/usr/bin/env node
// The masks family of refprune's conformance suite, in plain Node.js (no packages).
//
//     python -m conformance run --backend-cmd "node tests/backends/node/masks_backend.js" --family masks
//
// Written from docs/wire_protocol.md (the protocol, the value encoding, hex floats) and the
// operations' specification (conformance/backend.py, Backend's docstrings), without reading
// refprune's code: it shows that the protocol and the encoding can be implemented from the
// documents alone. It provides fraction_to_count, keep_top_k, select_masks, n_m_mask and
// prune_units under the "reference" profile.
//
// The two conventions every operation depends on live in one place each, `conventions`
// below: how a fraction becomes a count (the float64 product, then the rounding mode) and
// how equal scores are ordered (the lower flat C-order index is kept). A copy with one
// defect (tests/backends/node/ties_to_higher_index.js) replaces one of them.
"use strict";

const PROTOCOL = "refprune-conformance";
const VERSION = 1;
const NAME = "refprune masks in Node.js";
const PROFILE = "reference";

// ------------------------------------------------------------------------------ errors
// The protocol's `error` answer carries a kind and a message; the kinds follow the
// reference's (a wrong value is a ValueError, a wrong type a TypeError).
class ValueError extends Error {
  get name() { return "ValueError"; }
}

// ------------------------------------------------------------------------------ hex floats
// docs/wire_protocol.md, "Hex floats": written [-] 0x (0|1) [. H*] p (+|-) D+, read as C's strtod
// reads them (several leading digits, upper case, no exponent sign): value = digits * 2^(e - 4n).

const POW2 = new Float64Array(1023 + 1074 + 1);  // POW2[p + 1074] = 2^p, exact, p = -1074 .. 1023
(function fillPowers() {
  const view = new DataView(new ArrayBuffer(8));
  for (let p = -1074; p <= 1023; p++) {
    const bits = p >= -1022 ? BigInt(p + 1023) << 52n : 1n << BigInt(p + 1074);
    view.setBigUint64(0, bits);
    POW2[p + 1074] = view.getFloat64(0);
  }
})();

const HEX_FLOAT = /^([+-]?)0[xX]([0-9a-fA-F]+)(?:\.([0-9a-fA-F]*))?[pP]([+-]?[0-9]+)$/;

function parseHexFloat(text) {
  if (typeof text !== "string") {
    throw new TypeError(`a float64 is a hex-float string, got ${JSON.stringify(text)}`);
  }
  const special = { "inf": Infinity, "+inf": Infinity, "-inf": -Infinity, "nan": NaN };
  if (text.toLowerCase() in special) return special[text.toLowerCase()];
  const parts = HEX_FLOAT.exec(text);
  if (parts === null) throw new ValueError(`not a hex float: ${JSON.stringify(text)}`);
  const [, sign, whole, fraction = "", exponent] = parts;
  const digits = whole + fraction;
  const magnitude = scaleByPowerOfTwo(BigInt("0x" + digits), Number(exponent) - 4 * fraction.length);
  return sign === "-" ? -magnitude : magnitude;
}

// m * 2^p for an integer m >= 0, rounded once (to nearest, ties to even) as a float64.
function scaleByPowerOfTwo(m, p) {
  if (m === 0n) return 0;
  const top = p + m.toString(2).length - 1;   // the exponent of the leading bit
  if (top > 1023) return Infinity;
  if (top < -1075) return 0;                  // below half the smallest subnormal
  const lowest = Math.max(top - 52, -1074);   // the last bit a float64 of that size keeps
  if (lowest > p) {
    m = roundShift(m, lowest - p);
    p = lowest;
  }
  return Number(m) * POW2[p + 1074];          // m < 2^53 (or = 2^53): an exact product
}

// round(m / 2^shift), ties to even, for integers m >= 0 and shift >= 1.
function roundShift(m, shift) {
  const s = BigInt(shift);
  const q = m >> s;
  const rest = m - (q << s);
  const half = 1n << (s - 1n);
  if (rest > half || (rest === half && (q & 1n) === 1n)) return q + 1n;
  return q;
}

const BITS = new DataView(new ArrayBuffer(8));

function formatHexFloat(x) {
  BITS.setFloat64(0, x);
  const word = BITS.getBigUint64(0);
  const sign = word >> 63n ? "-" : "";
  const biased = Number((word >> 52n) & 0x7ffn);
  const mantissa = word & 0xfffffffffffffn;
  const digits = mantissa.toString(16).padStart(13, "0").replace(/0+$/, "");
  const fraction = digits ? "." + digits : "";
  if (biased === 2047) return mantissa === 0n ? sign + "inf" : "nan";
  if (biased === 0 && mantissa === 0n) return sign + "0x0p+0";
  if (biased === 0) return `${sign}0x0${fraction}p-1022`;
  const e = biased - 1023;
  return `${sign}0x1${fraction}p${e >= 0 ? "+" : ""}${e}`;
}

// ------------------------------------------------------------------------------ values
// docs/wire_protocol.md, "Values". An array is {dtype, shape, data}: data is a Float64Array
// (float64), a Uint8Array of 0/1 (bool) or an Array of integers (int64), in C order.

function decode(value, where) {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isSafeInteger(value)) {
      throw new ValueError(`${where}: a number must be an integer within 2^53, got ${value}`);
    }
    return value;
  }
  if (Array.isArray(value)) return value.map((v, i) => decode(v, `${where}[${i}]`));
  if ("float64" in value) return parseHexFloat(value.float64);
  if ("ndarray" in value) return decodeArray(value, where);
  const out = new Map();                      // a mapping keeps the order of its keys in the line
  for (const [key, v] of Object.entries(value)) out.set(key, decode(v, `${where}.${key}`));
  return out;
}

function decodeArray(value, where) {
  const { ndarray: dtype, shape, data } = value;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new ValueError(`${where}: shape must be a list of non-negative integers`);
  }
  const size = shape.reduce((a, b) => a * b, 1);
  if (data.length !== size) {
    throw new ValueError(`${where}: shape ${JSON.stringify(shape)} needs ${size} entries, got ${data.length}`);
  }
  if (dtype === "float64") return { dtype, shape, data: Float64Array.from(data, parseHexFloat) };
  if (dtype === "bool") {
    const bits = new Uint8Array(size);
    for (let i = 0; i < size; i++) {
      const c = data.charCodeAt(i) - 48;
      if (c !== 0 && c !== 1) throw new ValueError(`${where}: bool data is a string of '0' and '1'`);
      bits[i] = c;
    }
    return { dtype, shape, data: bits };
  }
  if (dtype === "int64") return { dtype, shape, data: data.slice() };
  throw new ValueError(`${where}: dtype must be float64, int64 or bool, got ${JSON.stringify(dtype)}`);
}

function encode(value) {
  if (value instanceof Map) {
    const out = {};
    for (const [key, v] of value) out[key] = encode(v);
    return out;
  }
  if (Array.isArray(value)) return value.map(encode);
  if (value !== null && typeof value === "object" && "dtype" in value) return encodeArray(value);
  return value;                                // integers, strings, booleans, null
}

function encodeArray({ dtype, shape, data }) {
  if (dtype === "bool") return { ndarray: "bool", shape, data: Array.from(data, (b) => (b ? "1" : "0")).join("") };
  if (dtype === "float64") return { ndarray: "float64", shape, data: Array.from(data, formatHexFloat) };
  return { ndarray: dtype, shape, data: Array.from(data) };
}

function boolArray(shape, data) {
  return { dtype: "bool", shape, data };
}

// ------------------------------------------------------------------------------ argument checks
function checkFloat(x, name, low, high) {
  if (typeof x !== "number") throw new TypeError(`${name} must be a float, got ${typeof x}`);
  if (!(x >= low && x <= high)) throw new ValueError(`${name} must be in [${low}, ${high}], got ${x}`);
  return x;
}

function checkInt(x, name, low, high) {
  if (!Number.isSafeInteger(x)) throw new TypeError(`${name} must be an integer, got ${JSON.stringify(x)}`);
  if (x < low || x > high) throw new ValueError(`${name} must be in [${low}, ${high}], got ${x}`);
  return x;
}

function checkChoice(x, name, choices) {
  if (!choices.includes(x)) {
    throw new ValueError(`${name} must be one of ${choices.join(", ")}, got ${JSON.stringify(x)}`);
  }
  return x;
}

function checkArray(a, name, dtype) {
  if (a === null || typeof a !== "object" || a.dtype !== dtype) {
    throw new TypeError(`${name} must be a ${dtype} array`);
  }
  if (dtype === "float64" && !a.data.every(Number.isFinite)) {
    throw new ValueError(`${name} must be finite`);
  }
  return a;
}

function checkMapping(m, name) {
  if (!(m instanceof Map)) throw new TypeError(`${name} must be a mapping name -> array`);
  return m;
}

function sameShape(a, b) {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

// ------------------------------------------------------------------------------ the two conventions
const ROUNDINGS = ["round-half-even", "floor", "ceil"];

const conventions = {
  // rounding(x) for x >= 0; round-half-even sends k + 1/2 to the even neighbour.
  round(x, rounding) {
    if (rounding === "floor") return Math.floor(x);
    if (rounding === "ceil") return Math.ceil(x);
    const down = Math.floor(x);
    const rest = x - down;                     // exact: the fractional part of a float64
    if (rest !== 0.5) return rest < 0.5 ? down : down + 1;
    return down % 2 === 0 ? down : down + 1;
  },
  // Order of two entries i, j (flat C-order indices) with equal scores: the lower index first,
  // so it is the one kept.
  tieOrder(i, j) {
    return i - j;
  },
};

// ------------------------------------------------------------------------------ operations
// Each takes the decoded keyword arguments of the call and returns the decoded result.

// count = rounding(fraction * n), the product in float64.
function fractionToCount({ fraction, n, rounding }) {
  checkFloat(fraction, "fraction", 0, 1);
  checkInt(n, "n", 0, Number.MAX_SAFE_INTEGER);
  checkChoice(rounding, "rounding", ROUNDINGS);
  return conventions.round(fraction * n, rounding) + 0;   // + 0: -0 (from -0.0 * n) is 0
}

// The k highest scores kept; equal scores (-0.0 == 0.0) in conventions.tieOrder.
function keepTopKFlat(scores, k) {
  const order = Array.from(scores, (_, i) => i);
  order.sort((i, j) => (scores[i] > scores[j] ? -1 : scores[i] < scores[j] ? 1 : conventions.tieOrder(i, j)));
  const keep = new Uint8Array(scores.length);
  for (let r = 0; r < k; r++) keep[order[r]] = 1;
  return keep;
}

function keepTopK({ scores, k }) {
  checkArray(scores, "scores", "float64");
  checkInt(k, "k", 0, scores.data.length);
  return boolArray(scores.shape, keepTopKFlat(scores.data, k));
}

// Prune fraction_to_count(f, alive) alive entries of each group (the lowest scores); a group's
// alive scores are concatenated in the order of its names, C order within each.
function selectMasks({ scores, masks, fraction, scope, rate_multipliers: multipliers, rounding }) {
  checkMapping(scores, "scores");
  checkMapping(masks, "masks");
  if (scores.size === 0) throw new ValueError("scores must name at least one parameter");
  for (const [name, s] of scores) {
    checkArray(s, `scores[${name}]`, "float64");
    if (!masks.has(name)) throw new ValueError(`masks must have an entry for every name of scores; missing ${name}`);
    const m = checkArray(masks.get(name), `masks[${name}]`, "bool");
    if (!sameShape(s.shape, m.shape)) throw new ValueError(`scores[${name}] and masks[${name}] must have the same shape`);
  }
  checkFloat(fraction, "fraction", 0, 1);
  checkChoice(scope, "scope", ["layer", "global"]);
  checkChoice(rounding, "rounding", ROUNDINGS);
  const mult = new Map();
  if (multipliers !== null) {
    checkMapping(multipliers, "rate_multipliers");
    for (const [name, v] of multipliers) {
      if (!scores.has(name)) throw new ValueError(`rate_multipliers has ${name}, which is not a name of scores`);
      checkFloat(v, `rate_multipliers[${name}]`, 0, Infinity);
      if (fraction * v > 1) throw new ValueError(`fraction * rate_multipliers[${name}] must be <= 1`);
      mult.set(name, v);
    }
  }
  const names = [...scores.keys()];
  const rate = (name) => (mult.has(name) ? mult.get(name) : 1.0);
  let groups;
  if (scope === "layer") {
    groups = names.map((name) => [[name], fraction * rate(name)]);
  } else {
    const pool = names.filter((name) => rate(name) === 1.0);
    groups = pool.length ? [[pool, fraction]] : [];
    for (const name of names) if (rate(name) !== 1.0) groups.push([[name], fraction * rate(name)]);
  }
  const out = new Map();
  for (const [group, f] of groups) {
    const alive = [];                          // the group's alive scores, in order
    for (const name of group) {
      const s = scores.get(name).data, m = masks.get(name).data;
      for (let i = 0; i < s.length; i++) if (m[i]) alive.push(s[i]);
    }
    const prune = fractionToCount({ fraction: f, n: alive.length, rounding });
    const keep = keepTopKFlat(alive, alive.length - prune);
    let at = 0;
    for (const name of group) {
      const m = masks.get(name);
      const kept = new Uint8Array(m.data.length);
      for (let i = 0; i < kept.length; i++) if (m.data[i]) kept[i] = keep[at++];
      out.set(name, boolArray(m.shape, kept));
    }
  }
  return new Map(names.map((name) => [name, out.get(name)]));
}

// In each run of m consecutive entries along the last axis, the n highest alive scores.
function nMMask({ scores, n, m, alive }) {
  checkArray(scores, "scores", "float64");
  if (scores.shape.length === 0) throw new ValueError("scores must have at least one dimension, got a scalar");
  checkInt(m, "m", 1, Number.MAX_SAFE_INTEGER);
  checkInt(n, "n", 0, m);
  const last = scores.shape[scores.shape.length - 1];
  if (last % m !== 0) throw new ValueError(`m must divide the length of the last axis of scores (${last}), got m=${m}`);
  if (alive !== null) {
    checkArray(alive, "alive", "bool");
    if (!sameShape(alive.shape, scores.shape)) throw new ValueError("alive must have the shape of scores");
  }
  const s = scores.data;
  const keep = new Uint8Array(s.length);
  for (let start = 0; start < s.length; start += m) {
    const members = [];                        // the group's alive entries, in order
    for (let i = start; i < start + m; i++) if (alive === null || alive.data[i]) members.push(i);
    const kept = keepTopKFlat(members.map((i) => s[i]), Math.min(n, members.length));
    members.forEach((i, r) => { keep[i] = kept[r]; });
  }
  return boolArray(scores.shape, keep);
}

// Structured pruning: whole hidden units by the norm of their masked incoming rows.
function pruneUnits({ params, masks, fraction, norm, rounding }) {
  checkMapping(params, "params");
  checkMapping(masks, "masks");
  checkFloat(fraction, "fraction", 0, 1);
  checkChoice(norm, "norm", ["l1", "l2"]);
  checkChoice(rounding, "rounding", ROUNDINGS);
  let layers = 0;
  while (params.has(`layers.${layers}.weight`)) layers++;
  for (const [name, p] of params) {
    checkArray(p, `params[${name}]`, "float64");
    const m = checkArray(masks.get(name), `masks[${name}]`, "bool");
    if (!sameShape(p.shape, m.shape)) throw new ValueError(`masks[${name}] must have the shape of params[${name}]`);
  }
  if (layers < 2) throw new ValueError("the network has no hidden layer, so there are no units to prune");
  const weight = (l) => `layers.${l}.weight`;
  // Scores and alive units of every hidden layer, from the masks as given.
  const scored = [];
  for (let l = 0; l < layers - 1; l++) {
    const w = params.get(weight(l)), wm = masks.get(weight(l));
    const [units, inputs] = w.shape;
    const outgoing = masks.get(weight(l + 1));
    const bias = masks.get(`layers.${l}.bias`).data;
    const unitScores = new Float64Array(units);
    const unitAlive = new Uint8Array(units);
    for (let i = 0; i < units; i++) {
      let sum = 0;                             // in index order, from 0
      for (let j = 0; j < inputs; j++) {
        const x = wm.data[i * inputs + j] ? w.data[i * inputs + j] : 0;
        sum += norm === "l1" ? Math.abs(x) : x * x;
      }
      unitScores[i] = norm === "l1" ? sum : Math.sqrt(sum);
      let live = bias[i] === 1;
      for (let j = 0; j < inputs && !live; j++) live = wm.data[i * inputs + j] === 1;
      for (let r = 0; r < outgoing.shape[0] && !live; r++) live = outgoing.data[r * units + i] === 1;
      unitAlive[i] = live ? 1 : 0;
    }
    scored.push({ units, unitScores, unitAlive });
  }
  const out = new Map();
  for (const [name, m] of masks) out.set(name, boolArray(m.shape, Uint8Array.from(m.data)));
  scored.forEach(({ units, unitScores, unitAlive }, l) => {
    const kept = selectMasks({
      scores: new Map([["units", { dtype: "float64", shape: [units], data: unitScores }]]),
      masks: new Map([["units", boolArray([units], unitAlive)]]),
      fraction, scope: "layer", rate_multipliers: null, rounding,
    }).get("units").data;
    const row = out.get(weight(l)), bias = out.get(`layers.${l}.bias`), next = out.get(weight(l + 1));
    const inputs = row.shape[1], outputs = next.shape[0];
    for (let i = 0; i < units; i++) {
      if (!unitAlive[i] || kept[i]) continue;
      for (let j = 0; j < inputs; j++) row.data[i * inputs + j] = 0;
      bias.data[i] = 0;
      for (let r = 0; r < outputs; r++) next.data[r * units + i] = 0;
    }
  });
  return new Map([...params.keys()].map((name) => [name, out.get(name)]));
}

const OPERATIONS = {
  fraction_to_count: { args: ["fraction", "n", "rounding"], run: fractionToCount },
  keep_top_k: { args: ["scores", "k"], run: keepTopK },
  select_masks: { args: ["scores", "masks", "fraction", "scope", "rate_multipliers", "rounding"], run: selectMasks },
  prune_units: { args: ["params", "masks", "fraction", "norm", "rounding"], run: pruneUnits },
  n_m_mask: { args: ["scores", "n", "m", "alive"], run: nMMask },
};

// ------------------------------------------------------------------------------ the protocol
// docs/wire_protocol.md, "Life cycle" and "Messages": a hello, then one answer per call line.

function send(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function answer(line) {
  let call;
  try {
    call = JSON.parse(line);
  } catch (exc) {
    return { type: "error", id: null, error: "ProtocolError", message: `the line is not JSON: ${exc.message}` };
  }
  const id = call !== null && Number.isSafeInteger(call.id) ? call.id : null;
  const fail = (error, message, traceback) => {
    const out = { type: "error", id, error, message };
    if (traceback) out.traceback = traceback;
    return out;
  };
  if (call === null || call.type !== "call" || id === null || typeof call.args !== "object" || call.args === null) {
    return fail("ProtocolError", "expected a call message with an id and args");
  }
  const op = OPERATIONS[call.op];
  if (op === undefined) return fail("ProtocolError", `this backend does not provide ${JSON.stringify(call.op)}`);
  const missing = op.args.filter((a) => !(a in call.args));
  const extra = Object.keys(call.args).filter((a) => !op.args.includes(a));
  if (missing.length || extra.length) {
    return fail("TypeError", `${call.op} takes ${op.args.join(", ")}; missing [${missing}], unexpected [${extra}]`);
  }
  try {
    const args = {};
    for (const name of op.args) args[name] = decode(call.args[name], name);
    return { type: "result", id, value: encode(op.run(args)) };
  } catch (exc) {
    return fail(exc.name || "Error", exc.message || String(exc), exc.stack);
  }
}

function main(backendName = NAME) {
  send({ type: "hello", protocol: PROTOCOL, version: VERSION, backend: backendName,
         operations: Object.keys(OPERATIONS), profile: PROFILE });
  let pending = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk) => {
    pending += chunk;
    let end;
    while ((end = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      send(answer(line));
    }
  });
  process.stdin.on("end", () => {
    if (pending) send(answer(pending));
    process.exitCode = 0;
  });
}

module.exports = { conventions, OPERATIONS, parseHexFloat, formatHexFloat, answer, main };

if (require.main === module) main();
