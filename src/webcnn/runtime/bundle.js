// Fetch and validate a bundle completely before any GPU work: schema, sizes, hashes.
import { WebcnnError, fail } from './errors.js';

export const FORMAT = 'webcnn-bundle';
export const VERSION = 2;

async function fetchOrFail(url, what, signal) {
  let response;
  try {
    response = await fetch(url, { signal });
  } catch (e) {
    if (signal && signal.aborted) throw e;
    fail('fetch', `could not fetch the bundle's ${what} from ${url}: ${e.message}. Check the URL and that the server is running.`);
  }
  if (!response.ok) fail('fetch', `fetching the bundle's ${what} from ${url} gave HTTP ${response.status}. Check the bundle URL.`);
  return response;
}

export async function fetchBundle(baseUrl, signal) {
  const base = baseUrl.endsWith('/') ? baseUrl : baseUrl + '/';
  const text = await (await fetchOrFail(base + 'model.json', 'model.json', signal)).text();
  let manifest;
  try {
    manifest = JSON.parse(text);
  } catch (e) {
    fail('bundle-json', `model.json at ${base} is not valid JSON (${e.message}); recompile the bundle with \`webcnn compile\`.`);
  }
  validateManifest(manifest);
  const weights = await (await fetchOrFail(base + manifest.weightsFile.name, 'weights', signal)).arrayBuffer();
  await validateWeights(manifest, weights);
  return { manifest, weights };
}

function check(condition, message) {
  if (!condition) fail('bundle-schema', `invalid bundle: ${message}. The bundle is damaged or was edited; recompile it with \`webcnn compile\`.`);
}

const isInt = (x) => Number.isInteger(x) && x >= 0;
const isArray = Array.isArray;

export function validateManifest(m) {
  check(m && typeof m === 'object', 'model.json is not an object');
  check(m.format === FORMAT, `model.json is not a webcnn bundle (format is ${JSON.stringify(m.format)})`);
  if (m.version !== VERSION) {
    fail('bundle-version', `bundle format version ${JSON.stringify(m.version)} is not supported by this runtime (it reads version ${VERSION}); recompile the model with the webcnn version that ships this runtime.`);
  }
  for (const key of ['inputs', 'outputs', 'textures', 'weights', 'programs', 'passes']) {
    check(isArray(m[key]), `missing or non-array field "${key}"`);
  }
  check(m.weightsFile && typeof m.weightsFile.name === 'string' && /^[\w.-]+$/.test(m.weightsFile.name), 'missing or bad field "weightsFile.name"');
  check(isInt(m.weightsFile.bytes) && typeof m.weightsFile.sha256 === 'string', 'missing field "weightsFile.bytes" or "weightsFile.sha256"');
  const { chunkBytes, chunks } = m.weightsFile;
  check(isInt(chunkBytes) && chunkBytes > 0 && isArray(chunks) && chunks.length === Math.ceil(m.weightsFile.bytes / chunkBytes)
    && chunks.every((h) => typeof h === 'string'), 'missing or bad fields "weightsFile.chunkBytes" / "weightsFile.chunks"');
  m.textures.forEach((t, i) => check(isInt(t.width) && isInt(t.height) && t.width > 0 && t.height > 0 && (t.layers === undefined || (isInt(t.layers) && t.layers > 1)), `texture ${i} has no valid width/height/layers`));
  m.weights.forEach((w, i) => {
    check(isInt(w.width) && isInt(w.height) && isInt(w.offset) && isInt(w.bytes) && typeof w.sha256 === 'string', `weight ${i} is missing width/height/offset/bytes/sha256`);
    check(w.bytes === w.width * w.height * 16, `weight ${i} ("${w.name}") has ${w.bytes} bytes for a ${w.width}x${w.height} RGBA32F texture`);
    check(w.offset + w.bytes <= m.weightsFile.bytes, `weight ${i} ("${w.name}") lies outside weights.bin`);
  });
  m.programs.forEach((p, i) => check(typeof p.fragment === 'string' && isArray(p.samplers), `program ${i} has no fragment source or samplers`));
  const tensors = [...m.inputs, ...m.outputs, ...(m.debugTensors || [])];
  tensors.forEach((t) => {
    check(typeof t.name === 'string' && isArray(t.shape) && isArray(t.parts) && t.parts.length > 0, `tensor entry ${JSON.stringify(t.name)} is missing name/shape/parts`);
    check([t.channels, t.height, t.width].every(isInt), `tensor "${t.name}" is missing channels/height/width`);
    t.parts.forEach((p) => check(isInt(p.texture) && p.texture < m.textures.length && isInt(p.slices) && isInt(p.cols) && isInt(p.rows), `tensor "${t.name}" has a bad part`));
  });
  check(m.inputs.every((t) => t.parts.length === 1), 'an input spans several textures');
  check([...m.inputs, ...m.outputs, ...(m.debugTensors || [])].every((t) => t.parts.every((p) => !m.textures[p.texture].layers)), 'an input or output lives in a layered texture');
  m.passes.forEach((p, i) => {
    check(isInt(p.program) && p.program < m.programs.length, `pass ${i} names no valid program`);
    check(isInt(p.output) && p.output < m.textures.length, `pass ${i} names no valid output texture`);
    check(isArray(p.inputs) && isArray(p.tiles) && isArray(p.tileFlops) && p.tiles.length === p.tileFlops.length, `pass ${i} is missing inputs/tiles/tileFlops`);
    const samplers = m.programs[p.program].samplers;
    check(p.inputs.length === samplers.length, `pass ${i} binds ${p.inputs.length} textures for ${samplers.length} samplers`);
    p.inputs.forEach((b) => check(
      (isInt(b.texture) && b.texture < m.textures.length && b.texture !== p.output) || (isInt(b.weight) && b.weight < m.weights.length),
      `pass ${i} binds a bad texture or weight`));
    const out = m.textures[p.output];
    p.tiles.forEach((t) => check(isArray(t) && t.length === 4 && t.every(isInt) && t[0] + t[2] <= out.width && t[1] + t[3] <= out.height, `pass ${i} has a tile outside its output texture`));
  });
}

async function sha256Hex(bytes) {
  if (!globalThis.crypto || !crypto.subtle) {
    fail('insecure-context', 'cannot verify bundle hashes: crypto.subtle needs a secure context (https or http://localhost).');
  }
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

const HASH_SLICE_MS = 4;   // main-thread time spent hashing before yielding to the page

// Chromium runs a digest on the main thread and resolves it without a task boundary (MobileNetV2's 14 MB: 18 ms in
// one call), so weights.bin is checked a chunk at a time, yielding to the page every few ms.
export async function validateWeights(m, buffer) {
  if (buffer.byteLength !== m.weightsFile.bytes) {
    fail('bundle-weights', `weights.bin has ${buffer.byteLength} bytes but model.json expects ${m.weightsFile.bytes} (truncated or replaced); copy the bundle again or recompile it.`);
  }
  const { chunkBytes, chunks } = m.weightsFile;
  let since = performance.now();
  for (let i = 0; i < chunks.length; i++) {
    if (performance.now() - since > HASH_SLICE_MS) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      since = performance.now();
    }
    const start = i * chunkBytes;
    const end = Math.min(start + chunkBytes, buffer.byteLength);
    if (await sha256Hex(new Uint8Array(buffer, start, end - start)) === chunks[i]) continue;
    // Name the damaged weight so the report points at something concrete.
    for (const w of m.weights.filter((w) => w.offset < end && w.offset + w.bytes > start)) {
      const got = await sha256Hex(new Uint8Array(buffer, w.offset, w.bytes));
      if (got !== w.sha256) fail('bundle-hash', `weights.bin is corrupt: weight "${w.name}" fails its sha256 check; copy the bundle again or recompile it.`);
    }
    fail('bundle-hash', `weights.bin is corrupt (bytes ${start}-${end} fail their sha256 check); copy the bundle again or recompile it.`);
  }
}

export { WebcnnError };
