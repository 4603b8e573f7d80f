// `webcnn bench` page: a visible WebGL canvas animating every frame (plus a probe draw + fence), a long-task
// observer, and one system inferring continuously. Python (bench.py) drives it through window.bench.start().
import { load } from './webcnn.js';

const display = document.getElementById('display');
const status = document.getElementById('status');
const gl = display.getContext('webgl2', { antialias: false });
const rec = { frames: [], probes: [], longtasks: [], marks: [] };   // marks: [t, phase, done, total] while loading

new PerformanceObserver((list) => {
  for (const e of list.getEntries()) rec.longtasks.push([e.startTime, e.duration]);
}).observe({ type: 'longtask', buffered: true });

// The cheap per-frame draw: a triangle whose colour and position move with time.
function program(vs, fs) {
  const p = gl.createProgram();
  for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
    const s = gl.createShader(type);
    gl.shaderSource(s, src);
    gl.compileShader(s);
    gl.attachShader(p, s);
  }
  gl.linkProgram(p);
  return p;
}
const tri = program(`#version 300 es
uniform float t;
void main() { vec2 v[3] = vec2[3](vec2(-0.3, -0.3), vec2(0.3, -0.3), vec2(0.0, 0.3));
  gl_Position = vec4(v[gl_VertexID] + vec2(0.5 * sin(t), 0.0), 0.0, 1.0); }`, `#version 300 es
precision highp float; uniform float t; out vec4 o;
void main() { o = vec4(0.5 + 0.5 * sin(t * 3.0), 0.4, 0.8, 1.0); }`);
const tLoc = gl.getUniformLocation(tri, 't');

// Probe: a tiny scissored clear + fence; how long the page waits for the GPU to finish it.
let probe = null;
function pollProbe() {
  if (!probe) return;
  const s = gl.clientWaitSync(probe.fence, 0, 0);
  if (s === gl.ALREADY_SIGNALED || s === gl.CONDITION_SATISFIED) {
    rec.probes.push([probe.t, performance.now() - probe.t]);
    gl.deleteSync(probe.fence);
    probe = null;
  } else {
    setTimeout(pollProbe, 1);
  }
}

function frame(ts) {
  rec.frames.push(ts);
  gl.viewport(0, 0, display.width, display.height);
  gl.clearColor(0.1, 0.1, 0.12, 1);
  gl.clear(gl.COLOR_BUFFER_BIT);
  gl.useProgram(tri);
  gl.uniform1f(tLoc, ts / 1000);
  gl.drawArrays(gl.TRIANGLES, 0, 3);
  if (!probe) {
    gl.enable(gl.SCISSOR_TEST);
    gl.scissor(0, 0, 4, 4);
    gl.clearColor(1, 1, 1, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.disable(gl.SCISSOR_TEST);
    probe = { fence: gl.fenceSync(gl.SYNC_GPU_COMMANDS_COMPLETE, 0), t: performance.now() };
    gl.flush();
    setTimeout(pollProbe, 1);
  }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Each system: load(base, shape) -> { run(x) -> Float32Array (NCHW), stats?(), note? }.
const SYSTEMS = {
  async webcnn(base, shape, c, mode = 'budget') {
    const opts = { canvas: document.createElement('canvas'), trace: !!c.trace, onProgress: (p) => rec.marks.push([performance.now(), p.phase, p.done, p.total]) };
    if (c.budgetMs) Object.assign(opts, { budgetMs: c.budgetMs, adaptive: false });   // --budget-ms: a fixed budget
    const model = await load(`${base}webcnn/`, opts);
    return {
      run: async (x) => Object.values(await model.run(x, { mode }))[0].data,
      stats: () => ({ ...model.stats(), trace: c.trace ? model.scheduler.trace : undefined }),
    };
  },
  'webcnn-throughput': (base, shape, c) => SYSTEMS.webcnn(base, shape, c, 'throughput'),

  async 'tfjs-webgl'(base) {
    // The ES module build: the UMD build's polyfills evaluate strings, which even the peers' CSP forbids.
    const tf = await import('/peers/@tensorflow/tfjs/dist/tf.fesm.min.js');
    await tf.setBackend('webgl');
    await tf.ready();
    const graph = await (await fetch(`${base}tfjs/graph.json`)).json();
    const bin = await (await fetch(`${base}tfjs/weights.bin`)).arrayBuffer();
    const w = {};
    for (const e of graph.weights) {
      const n = e.shape.reduce((a, b) => a * b, 1);
      w[e.name] = tf.tensor(new Float32Array(bin, e.offset, n), e.shape);
    }
    const [, C, H, W] = graph.inputShape;
    const ops = {
      Conv: (n, x) => tf.fused.conv2d({ x, filter: w[n.filter], bias: n.bias && w[n.bias], strides: n.strides, pad: n.pad,
        dilations: n.dilations, activation: n.activation || 'linear' }),
      DepthwiseConv: (n, x) => tf.fused.depthwiseConv2d({ x, filter: w[n.filter], bias: n.bias && w[n.bias], strides: n.strides,
        pad: n.pad, dilations: n.dilations, activation: n.activation || 'linear' }),
      ConvTranspose: (n, x) => {
        const y = tf.conv2dTranspose(x, w[n.filter], n.outShape, n.strides, n.pad === 0 ? 'valid' : n.pad);
        return n.bias ? tf.add(y, w[n.bias]) : y;
      },
      Relu: (n, x) => tf.relu(x),
      Clip: (n, x) => tf.clipByValue(x, n.min, n.max),
      Add: (n, x, env) => tf.add(env[n.inputs[0]], env[n.inputs[1]]),
      Concat: (n, x, env) => tf.concat(n.inputs.map((i) => env[i]), 3),
      MaxPool: (n, x) => tf.maxPool(x, n.kernel, n.strides, n.pad),
      Resize: (n, x) => (n.mode === 'linear' ? tf.image.resizeBilinear(x, n.size, false, n.halfPixel)
        : tf.image.resizeNearestNeighbor(x, n.size, false, n.halfPixel)),
      GlobalAveragePool: (n, x) => tf.mean(x, [1, 2], true),
      Flatten: (n, x) => tf.reshape(x, [1, -1]),
      Softmax: (n, x) => tf.softmax(x),   // NHWC: the last axis is ONNX's channel axis 1
      Gemm: (n, x) => { const y = tf.matMul(x, w[n.filter]); return n.bias ? tf.add(y, w[n.bias]) : y; },
    };
    const forward = (x) => tf.tidy(() => {
      const env = { [graph.input]: tf.transpose(tf.tensor4d(x, [1, C, H, W]), [0, 2, 3, 1]) };
      for (const n of graph.nodes) env[n.output] = ops[n.op](n, env[n.inputs[0]], env);
      const y = env[graph.output];
      return y.rank === 4 ? tf.transpose(y, [0, 3, 1, 2]) : y;
    });
    return {
      run: async (x) => { const y = forward(x); const d = await y.data(); y.dispose(); return d; },
      stats: () => ({ backend: tf.getBackend(), numTensors: tf.memory().numTensors }),
    };
  },

  async 'ort-wasm'(base, shape, c, { ep = 'wasm', proxy = false } = {}) {
    const ort = await import('/peers/onnxruntime-web/dist/ort.all.min.mjs');
    ort.env.wasm.wasmPaths = '/peers/onnxruntime-web/dist/';
    ort.env.wasm.numThreads = 1;   // no cross-origin isolation here, so no wasm threads
    ort.env.wasm.proxy = proxy;
    if (ep === 'webgpu') {
      const adapter = navigator.gpu && await navigator.gpu.requestAdapter();
      if (!adapter) return { unavailable: 'no adapter' };
    }
    const session = await ort.InferenceSession.create(`${base}model.onnx`, { executionProviders: [ep] });
    const input = session.inputNames[0];
    return {
      run: async (x) => {
        // The proxy transfers the input's buffer to its worker: give it a copy each run.
        const out = await session.run({ [input]: new ort.Tensor('float32', proxy ? x.slice() : x, shape) });
        return out[session.outputNames[0]].data;
      },
      stats: () => ({ ep, proxy }),
    };
  },
  'ort-wasm-proxy': (base, shape, c) => SYSTEMS['ort-wasm'](base, shape, c, { proxy: true }),
  'ort-webgpu': (base, shape, c) => SYSTEMS['ort-wasm'](base, shape, c, { ep: 'webgpu' }),
};

function sample(out) {
  const stride = Math.max(1, Math.ceil(out.length / 4096));
  const s = [];
  for (let i = stride - 1; i < out.length; i += stride) s.push(out[i]);
  return { output: s, outputStride: stride };
}

window.bench = {
  // The window lasts `seconds` and at least `minInferences` inferences, but no longer than `maxSeconds`.
  async start({ system, base, shape, seconds, minInferences = 1, maxSeconds = seconds, budgetMs, trace = false, firstTimeoutS = 90 }) {
    const x = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37);
    await sleep(500);   // let the display loop settle
    status.textContent = `${system}: loading`;
    const tStart = performance.now();
    let tFirst = tStart;
    let runner = null;
    let first = null;
    try {
      if (system !== 'idle') {
        const timeout = new Promise((resolve, reject) => setTimeout(
          () => reject(new Error(`no first result within ${firstTimeoutS} s`)), firstTimeoutS * 1000));
        runner = await Promise.race([SYSTEMS[system](base, shape, { budgetMs, trace }), timeout]);
        if (runner.unavailable) return { error: runner.unavailable };
        first = await Promise.race([runner.run(x), timeout]);
        tFirst = performance.now();
      }
      status.textContent = `${system}: running`;
      const cpuStart = window.benchCpu ? await window.benchCpu() : null;   // Chromium's CPU use, from Python
      const runStart = performance.now();
      const latencies = [];
      if (runner) {
        const more = () => {
          const elapsed = performance.now() - runStart;
          return elapsed < maxSeconds * 1000 && (elapsed < seconds * 1000 || latencies.length < minInferences);
        };
        while (more()) {
          const a = performance.now();
          await runner.run(x);
          latencies.push(performance.now() - a);
          await sleep(0);   // a task boundary between runs, as an app's loop has: lets a due frame render
        }
      } else {
        await sleep(seconds * 1000);
      }
      const runEnd = performance.now();
      const cpuEnd = window.benchCpu ? await window.benchCpu() : null;
      await sleep(100);   // let the last long-task entries arrive
      status.textContent = `${system}: done`;
      return { ...rec, tStart, tFirst, runStart, runEnd, cpuStart, cpuEnd, latencies, stats: runner && runner.stats ? runner.stats() : null,
        ...(first ? sample(first) : {}) };
    } catch (e) {
      return { error: `${e.name}: ${e.message}`.slice(0, 300) };
    }
  },
};
status.textContent = 'ready';
