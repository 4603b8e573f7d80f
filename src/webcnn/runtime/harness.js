// Test and verify harness: Python drives it through window.harness; with ?bundle=... it runs on its own.
import { load } from './webcnn.js';

const models = new Map();
const violations = [];
document.addEventListener('securitypolicyviolation', (e) => violations.push(`${e.violatedDirective} ${e.blockedURI}`));

function toBase64(floats) {
  const bytes = new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength);
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return new Float32Array(bytes.buffer);
}

function serialise(outputs) {
  return Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, { shape: v.shape, data: toBase64(v.data) }]));
}

function errorInfo(e) {
  return { error: { name: e.name, code: e.code || null, message: e.message } };
}

window.harness = {
  async load(id, url, options = {}) {
    try {
      const progress = [];
      const model = await load(url, { ...options, onProgress: (p) => progress.push(p.phase) });
      models.set(id, model);
      return { ok: true, stats: model.stats(), phases: [...new Set(progress)] };
    } catch (e) {
      return errorInfo(e);
    }
  },
  async run(id, inputs, { timeoutMs = 120000, mode, debug = false } = {}) {
    try {
      const model = models.get(id);
      const named = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, fromBase64(v)]));
      const outputs = await model.run(named, { signal: AbortSignal.timeout(timeoutMs), mode });
      const extra = debug ? await model.readDebugTensors() : {};
      return { outputs: serialise(outputs), debug: serialise(extra), stats: model.stats() };
    } catch (e) {
      return errorInfo(e);
    }
  },
  dispose(id) {
    const model = models.get(id);
    if (model) model.dispose();
    models.delete(id);
  },
  violations: () => violations.slice(),
};

// Self-running mode for the Content-Security-Policy test: no script is injected from outside.
const params = new URLSearchParams(location.search);
const status = document.getElementById('status');
if (params.has('bundle')) {
  (async () => {
    try {
      const model = await load(params.get('bundle'), { canvas: document.getElementById('display') });
      const input = new Float32Array(model.manifest.inputs[0].shape.reduce((a, b) => a * b, 1)).fill(0.5);
      const outputs = await model.run(input);
      const first = Object.values(outputs)[0];
      status.textContent = JSON.stringify({ done: true, shape: first.shape, sum: first.data.reduce((a, b) => a + b, 0), violations });
    } catch (e) {
      status.textContent = JSON.stringify({ done: true, error: e.message, violations });
    }
  })();
} else {
  status.textContent = 'ready';
}
