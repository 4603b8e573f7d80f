// `webcnn kernels` page: runners for single layers (webcnn and TF.js WebGL on the same shape), whole bundles and
// each pass of a bundle. Python (kernelbench.py) times repeat() by the GPU process's CPU time. A benchmark page, so
// it may block: a repetition is K back-to-back runs closed by one synchronous 1-texel readPixels.
import { load } from './webcnn.js';

const status = document.getElementById('status');

function syncRead(gl, fb) {
  gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
  gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.FLOAT, new Float32Array(4));
  gl.bindFramebuffer(gl.FRAMEBUFFER, null);
}

function unitRanges(model) {
  const units = model.units();
  const ranges = [];
  units.forEach((u, i) => {
    if (!ranges.length || ranges[ranges.length - 1].p !== u.p) ranges.push({ p: u.p, start: i, end: i + 1 });
    else ranges[ranges.length - 1].end = i + 1;
  });
  return ranges;
}

async function webcnnModel(url, precision) {
  const model = await load(url, { canvas: document.createElement('canvas'), precision });
  const x = new Float32Array(model.manifest.inputs[0].shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37);
  await model.run(x, { mode: 'throughput' });
  return model;
}

function webcnnSync(model) {
  const out = model.manifest.outputs[0].parts[0].texture;
  return () => syncRead(model.gl, model.framebuffer(out));
}

async function tfjsLayer(base) {
  const tf = await import('/peers/@tensorflow/tfjs/dist/tf.fesm.min.js');
  await tf.setBackend('webgl');
  await tf.ready();
  const graph = await (await fetch(`${base}graph.json`)).json();
  const bin = await (await fetch(`${base}weights.bin`)).arrayBuffer();
  const w = {};
  for (const e of graph.weights) w[e.name] = tf.tensor(new Float32Array(bin, e.offset, e.shape.reduce((a, b) => a * b, 1)), e.shape);
  const [, C, H, W] = graph.inputShape;
  const x = tf.randomNormal([1, H, W, C]);
  const n = graph.nodes[0];
  const ops = {
    Conv: () => tf.fused.conv2d({ x, filter: w[n.filter], bias: n.bias && w[n.bias], strides: n.strides, pad: n.pad,
      dilations: n.dilations, activation: n.activation || 'linear' }),
    DepthwiseConv: () => tf.fused.depthwiseConv2d({ x, filter: w[n.filter], bias: n.bias && w[n.bias], strides: n.strides,
      pad: n.pad, dilations: n.dilations, activation: n.activation || 'linear' }),
    ConvTranspose: () => {
      const y = tf.conv2dTranspose(x, w[n.filter], n.outShape, n.strides, n.pad === 0 ? 'valid' : n.pad);
      return n.bias ? tf.add(y, w[n.bias]) : y;
    },
  };
  let last = null;
  const step = () => { if (last) last.dispose(); last = ops[n.op](); };
  const sync = () => { last.dataSync(); };
  return { tf, step, sync, dispose: () => { if (last) last.dispose(); x.dispose(); Object.values(w).forEach((t) => t.dispose()); } };
}

// Runners prepared for timing from outside: Python measures the GPU process's CPU time around repeat().
const prepared = new Map();

window.kernels = {
  async prepare({ id, kind, url, precision = 'fp32' }) {
    try {
      if (kind === 'tfjs') prepared.set(id, await tfjsLayer(url));
      else {
        const model = await webcnnModel(url, precision);
        const n = model.units().length;
        prepared.set(id, { step: () => model.submit(0, n), sync: webcnnSync(model), dispose: () => { model.dispose(); const x = model.gl.getExtension('WEBGL_lose_context'); if (x) x.loseContext(); } });
        // One runner per pass too, `${id}#${p}`, for per-pass profiles.
        unitRanges(model).forEach(({ p, start, end }) => {
          const fb = model.framebuffer(model.manifest.passes[p].output);
          prepared.set(`${id}#${p}`, { step: () => model.submit(start, end), sync: () => syncRead(model.gl, fb), dispose: () => {} });
        });
      }
      const x = prepared.get(id);
      x.step(); x.sync();
      return { ok: true };
    } catch (e) {
      return { error: `${e.name}: ${e.message}`.slice(0, 400) };
    }
  },
  repeat({ id, k }) {
    const x = prepared.get(id);
    const t0 = performance.now();
    for (let i = 0; i < k; i++) x.step();
    x.sync();
    return performance.now() - t0;
  },
  release({ id }) {
    const x = prepared.get(id);
    if (x) x.dispose();
    prepared.delete(id);
  },

};
status.textContent = 'ready';
