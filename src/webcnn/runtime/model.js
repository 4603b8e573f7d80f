// A loaded bundle on one WebGL2 context: resources, runs, readback, lost-context recovery.
import { fetchBundle } from './bundle.js';
import { WebcnnError, fail } from './errors.js';
import {
  capabilities, createFramebuffer, createTexture, createVertexShader, finishProgram, getContext,
  programReady, resetUnpackState, startProgram, uploadRows,
} from './gl.js';
import { packTensor, unpackTensor } from './layout.js';
import { LostContextSignal, Scheduler, fenceSignaled, nextFrame } from './scheduler.js';

const UPLOAD_BYTES_PER_FRAME = 4 << 20;
const UPLOAD_BYTES_PER_CALL = 1 << 20;
const TEXTURE_BYTES_PER_FRAME = 16 << 20;   // activation textures allocated per frame (80 MB at once was a long task)
const WARM_PER_FRAME = 2;                   // programs drawn once per frame during load (see warmUp)
const WARM_FENCES = 2;
const COMPILE_MS_PER_FRAME = 8;             // a status check that took longer: start fewer programs per frame

export async function load(url, options = {}) {
  const { signal, onProgress } = options;
  onProgress && onProgress({ phase: 'fetch', done: 0, total: 1 });
  const { manifest, weights } = await fetchBundle(url, signal);
  onProgress && onProgress({ phase: 'fetch', done: 1, total: 1 });
  const model = new Model(manifest, weights, options);
  // A context lost mid-load is rebuilt by the recovery path; the load then finishes on the restored context.
  await model.enqueue(async () => { if (!model.built) await model.build(signal); });
  return model;
}

export class Model {
  constructor(manifest, weights, { canvas, gl, budgetMs = 4, adaptive = true, precision = 'auto', mode = 'budget', onProgress, compileBatch = 4, trace = false } = {}) {
    this.manifest = manifest;
    this.weightBytes = weights;
    this.options = { precision, compileBatch, onProgress };
    this.gl = getContext({ canvas, gl });
    this.canvas = this.gl.canvas;
    this.caps = capabilities(this.gl, precision);
    this.scheduler = new Scheduler(this.gl, this.caps, { budgetMs, mode, adaptive, trace });
    this.queue = Promise.resolve();
    this.disposed = false;
    this.lost = false;
    this.restored = null;
    this.counters = { runs: 0, rebuilds: 0, lastRunMs: 0 };
    this.checkLimits();
    this.onLost = (e) => { e.preventDefault(); this.lost = true; };
    // `lost` stays set until a rebuild: a context lost and restored between runs still needs one.
    this.onRestored = () => { this.restored && this.restored(); };
    if (this.canvas && this.canvas.addEventListener) {
      this.canvas.addEventListener('webglcontextlost', this.onLost);
      this.canvas.addEventListener('webglcontextrestored', this.onRestored);
    }
  }

  checkLimits() {
    const { maxTextureSize, maxTextureUnits } = this.caps;
    const m = this.manifest;
    for (const t of [...m.textures, ...m.weights]) {
      if (t.width > maxTextureSize || t.height > maxTextureSize) {
        fail('texture-size', `this bundle needs ${t.width}x${t.height} textures but the device allows ${maxTextureSize}; recompile with --max-texture-size ${maxTextureSize}.`);
      }
    }
    const layers = Math.max(1, ...m.textures.map((t) => t.layers || 1));
    if (layers > this.caps.maxDrawBuffers) fail('draw-buffers', `this bundle writes ${layers} render targets per pass but the device allows ${this.caps.maxDrawBuffers}; recompile with --phases ${this.caps.maxDrawBuffers}.`);
    const most = Math.max(...m.programs.map((p) => p.samplers.length));
    if (most > maxTextureUnits) fail('texture-units', `a program reads ${most} textures but the device has ${maxTextureUnits} texture units.`);
  }

  progress(event) {
    if (this.options.onProgress) this.options.onProgress(event);
  }

  // Create every GPU resource, spread over frames so the page keeps painting.
  async build(signal) {
    const gl = this.gl;
    const m = this.manifest;
    const format = this.caps.fp16 ? gl.RGBA16F : gl.RGBA32F;
    this.textures = [];
    this.framebuffers = new Map();
    this.weightTextures = [];
    // Framebuffers are made here, not on first draw: checking one waits for the GPU, which mid-run is busy. They are
    // checked a frame after their textures were queued, so the check does not wait for the allocation too.
    let frameBytes = 0;
    for (const t of m.textures) {
      this.textures.push(createTexture(gl, t.width, t.height, format, t.layers || 1));
      frameBytes += t.width * t.height * (t.layers || 1) * (this.caps.fp16 ? 8 : 16);
      if (frameBytes >= TEXTURE_BYTES_PER_FRAME) {
        this.progress({ phase: 'textures', done: this.textures.length, total: m.textures.length });
        frameBytes = 0;
        gl.flush();
        await this.yieldFrame(signal);
      }
    }
    gl.flush();
    await this.yieldFrame(signal);
    this.textures.forEach((_, i) => this.framebuffer(i));
    this.progress({ phase: 'textures', done: m.textures.length, total: m.textures.length });
    await this.yieldFrame(signal);
    resetUnpackState(gl);
    frameBytes = 0;
    const totalBytes = m.weights.reduce((a, w) => a + w.bytes, 0);
    let doneBytes = 0;
    for (const w of m.weights) {
      // Weights stay fp32 with fp16 storage: fp16 weights too put the whiteboard U-Net past 1e-2 (1.1e-2 vs 6.3e-3).
      const tex = createTexture(gl, w.width, w.height, gl.RGBA32F);
      this.weightTextures.push(tex);
      const rowBytes = w.width * 16;
      const rowsPerCall = Math.max(1, Math.floor(UPLOAD_BYTES_PER_CALL / rowBytes));
      for (let y = 0; y < w.height; y += rowsPerCall) {
        const rows = Math.min(rowsPerCall, w.height - y);
        uploadRows(gl, tex, w.width, y, rows, new Float32Array(this.weightBytes, w.offset + y * rowBytes, rows * w.width * 4));
        frameBytes += rows * rowBytes;
        doneBytes += rows * rowBytes;
        if (frameBytes >= UPLOAD_BYTES_PER_FRAME) {
          this.progress({ phase: 'weights', done: doneBytes, total: totalBytes });
          frameBytes = 0;
          await this.yieldFrame(signal);
        }
      }
    }
    this.progress({ phase: 'weights', done: totalBytes, total: totalBytes });
    if (frameBytes) await this.yieldFrame(signal);
    await this.compilePrograms(signal);
    gl.bindTexture(gl.TEXTURE_2D, null);
    if (!this.vao) this.vao = gl.createVertexArray();
    this.readBuffers = new Map();
    await this.warmUp(signal);
    this.built = true;
  }

  // Software GPUs (SwiftShader) compile a program's machine code at its first draw: 30-70 ms of GPU time per pass,
  // which would land in the first run's frames and spoil its speed estimates. One row of each program's first pass,
  // a few programs per frame, with at most WARM_FENCES frames of them in flight, moves that cost into the load.
  async warmUp(signal) {
    const gl = this.gl;
    const units = this.units();
    const firstUnit = new Map();
    units.forEach((u, i) => {
      const program = this.manifest.passes[u.p].program;
      if (!firstUnit.has(program)) firstUnit.set(program, i);
    });
    const todo = [...firstUnit.values()];
    const fences = [];
    let done = 0;
    while (done < todo.length || fences.length) {
      while (fences.length && fenceSignaled(gl, fences[0])) gl.deleteSync(fences.shift());
      if (done < todo.length && fences.length < WARM_FENCES) {
        const batch = todo.slice(done, done + WARM_PER_FRAME);
        this.submitPieces(batch.map((i) => [i, 0, 1]));
        done += batch.length;
        fences.push(gl.fenceSync(gl.SYNC_GPU_COMMANDS_COMPLETE, 0));
        gl.flush();
        this.progress({ phase: 'warmup', done, total: todo.length });
      }
      await this.yieldFrame(signal);
    }
  }

  async yieldFrame(signal) {
    await nextFrame();
    if (signal && signal.aborted) throw signal.reason instanceof Error ? signal.reason : new DOMException('aborted', 'AbortError');
    if (this.gl.isContextLost()) throw new LostContextSignal('context lost');
  }

  async compilePrograms(signal) {
    const gl = this.gl;
    const m = this.manifest;
    const parallel = this.caps.parallelCompile;
    this.vertexShader = createVertexShader(gl);
    this.programs = new Array(m.programs.length);
    // With KHR_parallel_shader_compile, start many and poll; without it, a few per frame, fewer if checks wait.
    const batch = parallel ? 16 : this.options.compileBatch;
    let next = 0;
    let done = 0;
    const pending = [];
    // Without the extension a status check blocks until the link is done; a fence behind each batch of links says
    // (without blocking) when the GPU process got through them.
    const linked = (fence) => {
      if (!fence || fence.done) return true;
      fence.done = fenceSignaled(gl, fence.sync);
      if (fence.done) gl.deleteSync(fence.sync);
      return fence.done;
    };
    const finishReady = () => {
      for (let i = pending.length - 1; i >= 0; i--) {
        const { index, job, fence } = pending[i];
        if (linked(fence) && programReady(gl, job, parallel)) {
          this.programs[index] = finishProgram(gl, job, m.programs[index].name, m.programs[index].samplers);
          pending.splice(i, 1);
          done++;
        }
      }
    };
    // Programs are started in one frame and checked in a later one, once their fence says the GPU process is done.
    let start = parallel ? batch : 1;
    while (done < m.programs.length) {
      const t0 = performance.now();
      finishReady();
      if (!parallel) start = performance.now() - t0 > COMPILE_MS_PER_FRAME ? Math.max(1, start - 1) : Math.min(batch, start + 1);
      const fence = parallel ? null : { sync: null, done: false };
      const first = next;
      for (let i = 0; i < start && pending.length < batch && next < m.programs.length; i++) {
        pending.push({ index: next, job: startProgram(gl, m.programs[next].fragment, this.vertexShader), fence });
        next++;
      }
      if (fence && next > first) {
        fence.sync = gl.fenceSync(gl.SYNC_GPU_COMMANDS_COMPLETE, 0);
        gl.flush();
      }
      this.progress({ phase: 'compile', done, total: m.programs.length });
      if (done < m.programs.length) await this.yieldFrame(signal);
    }
    gl.useProgram(null);
  }

  framebuffer(textureIndex) {
    let fb = this.framebuffers.get(textureIndex);
    if (!fb) {
      fb = createFramebuffer(this.gl, this.textures[textureIndex], this.manifest.textures[textureIndex].layers || 1);
      this.framebuffers.set(textureIndex, fb);
    }
    return fb;
  }

  inputsByName(inputs) {
    const m = this.manifest;
    if (inputs === null) return null;   // the caller already rendered the inputs through inputTexture()
    if (inputs instanceof Float32Array) {
      if (m.inputs.length !== 1) fail('input', `this model has ${m.inputs.length} inputs; pass an object {name: Float32Array}.`);
      return { [m.inputs[0].name]: inputs };
    }
    if (!inputs || typeof inputs !== 'object') fail('input', 'run() takes a Float32Array or an object {inputName: Float32Array}.');
    for (const t of m.inputs) {
      if (!(inputs[t.name] instanceof Float32Array)) fail('input', `missing input "${t.name}" (a Float32Array of shape [${t.shape}]).`);
    }
    return inputs;
  }

  upload(inputs) {
    const gl = this.gl;
    resetUnpackState(gl);
    for (const t of this.manifest.inputs) {
      const data = inputs[t.name];
      const expected = t.shape.reduce((a, b) => a * b, 1);
      if (data.length !== expected) fail('input', `input "${t.name}" has ${data.length} values; its shape [${t.shape}] needs ${expected}.`);
      const part = t.parts[0];
      const width = part.cols * t.width;
      const height = part.rows * t.height;
      uploadRows(gl, this.textures[part.texture], width, 0, height, packTensor(t, data));
    }
  }

  // The draw queue of one run: (pass, tile) units with their compile-time costs.
  units() {
    if (!this.unitList) {
      this.unitList = [];
      this.manifest.passes.forEach((pass, p) => pass.tiles.forEach((tile, i) => this.unitList.push({ p, tile, cost: pass.tileFlops[i], rows: tile[3], key: p })));
    }
    return this.unitList;
  }

  submit(start, end) {
    const units = this.units();
    const pieces = [];
    for (let i = start; i < end; i++) pieces.push([i, 0, units[i].rows]);
    return this.submitPieces(pieces);
  }

  // pieces: [[unit, row0, row1], ...], each a band of rows of a unit's tile (the scheduler splits tiles to fit a frame).
  submitPieces(pieces) {
    const gl = this.gl;
    const m = this.manifest;
    const units = this.units();
    const savedViewport = gl.getParameter(gl.VIEWPORT);
    gl.bindVertexArray(this.vao);
    gl.enable(gl.SCISSOR_TEST);
    gl.disable(gl.BLEND);
    gl.disable(gl.DEPTH_TEST);
    let current = -1;
    let draws = 0;
    let rect = null;
    const flush = () => {
      if (rect) { gl.scissor(rect[0], rect[1], rect[2], rect[3]); gl.drawArrays(gl.TRIANGLES, 0, 3); draws++; rect = null; }
    };
    for (const [i, row0, row1] of pieces) {
      const { p, tile: whole } = units[i];
      const tile = [whole[0], whole[1] + row0, whole[2], row1 - row0];
      if (p !== current) {
        flush();
        current = p;
        const pass = m.passes[p];
        gl.useProgram(this.programs[pass.program]);
        gl.bindFramebuffer(gl.FRAMEBUFFER, this.framebuffer(pass.output));
        const out = m.textures[pass.output];
        gl.viewport(0, 0, out.width, out.height);
        pass.inputs.forEach((b, unit) => {
          gl.activeTexture(gl.TEXTURE0 + unit);
          if (b.texture !== undefined && m.textures[b.texture].layers) gl.bindTexture(gl.TEXTURE_2D_ARRAY, this.textures[b.texture]);
          else gl.bindTexture(gl.TEXTURE_2D, b.texture !== undefined ? this.textures[b.texture] : this.weightTextures[b.weight]);
        });
      }
      // Adjacent bands of one pass merge into a single draw: fewer, larger draws when the budget allows.
      if (rect && rect[0] === tile[0] && rect[2] === tile[2] && rect[1] + rect[3] === tile[1]) rect[3] += tile[3];
      else { flush(); rect = tile.slice(); }
    }
    flush();
    gl.disable(gl.SCISSOR_TEST);
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.bindVertexArray(null);
    gl.useProgram(null);
    gl.activeTexture(gl.TEXTURE0);
    gl.viewport(savedViewport[0], savedViewport[1], savedViewport[2], savedViewport[3]);
    return draws;
  }

  // Copy a tensor's textures into pixel-pack buffers (GPU side, no wait); readPacked() fetches them once a fence
  // issued after this has signalled.
  packRead(t) {
    const gl = this.gl;
    const packed = [];
    for (const part of t.parts) {
      const width = part.cols * t.width;
      const height = part.rows * t.height;
      const bytes = width * height * 16;
      const key = `${part.texture}:${bytes}`;
      let buffer = this.readBuffers.get(key);
      if (!buffer) {
        buffer = gl.createBuffer();
        gl.bindBuffer(gl.PIXEL_PACK_BUFFER, buffer);
        gl.bufferData(gl.PIXEL_PACK_BUFFER, bytes, gl.STREAM_READ);
        this.readBuffers.set(key, buffer);
      }
      gl.bindFramebuffer(gl.FRAMEBUFFER, this.framebuffer(part.texture));
      gl.bindBuffer(gl.PIXEL_PACK_BUFFER, buffer);
      gl.pixelStorei(gl.PACK_ALIGNMENT, 4);
      gl.readPixels(0, 0, width, height, gl.RGBA, gl.FLOAT, 0);
      gl.bindBuffer(gl.PIXEL_PACK_BUFFER, null);
      gl.bindFramebuffer(gl.FRAMEBUFFER, null);
      packed.push({ part, buffer, length: width * height * 4 });
    }
    return { t, packed };
  }

  readPacked({ t, packed }) {
    const gl = this.gl;
    const chunks = packed.map(({ part, buffer, length }) => {
      const texels = new Float32Array(length);
      gl.bindBuffer(gl.PIXEL_PACK_BUFFER, buffer);
      gl.getBufferSubData(gl.PIXEL_PACK_BUFFER, 0, texels);
      return { part, texels };
    });
    gl.bindBuffer(gl.PIXEL_PACK_BUFFER, null);
    return { name: t.name, shape: t.shape.slice(), data: unpackTensor(t, chunks) };
  }

  async readTensor(t, signal) {
    const gl = this.gl;
    const packed = this.packRead(t);
    await this.scheduler.waitFence(gl.fenceSync(gl.SYNC_GPU_COMMANDS_COMPLETE, 0), signal);
    return this.readPacked(packed);
  }

  // Serialise runs and survive context loss: a lost context rebuilds everything and repeats the run.
  enqueue(job) {
    const result = this.queue.then(() => this.withRecovery(job));
    this.queue = result.catch(() => {});
    return result;
  }

  async withRecovery(job) {
    for (let attempt = 0; ; attempt++) {
      if (this.disposed) fail('disposed', 'this model was disposed; load it again.');
      try {
        if (this.lost || this.gl.isContextLost()) { await this.recover(); this.lost = false; }
        return await job();
      } catch (e) {
        if (!(e instanceof LostContextSignal) && !this.gl.isContextLost()) throw e;
        if (attempt >= 3) fail('context-lost', 'the WebGL context was lost repeatedly; reload the page.');
      }
    }
  }

  async recover() {
    if (this.gl.isContextLost()) {
      await new Promise((resolve, reject) => {
        this.restored = resolve;
        setTimeout(() => reject(new WebcnnError('context-lost', 'the WebGL context was lost and not restored within 30 s; reload the page.')), 30000);
      });
    }
    this.counters.rebuilds++;
    // A restored context has no extensions enabled: ask for them again.
    this.caps = capabilities(this.gl, this.options.precision);
    this.scheduler.timer = this.caps.timer;
    this.scheduler.reset();
    this.unitList = null;
    this.vao = null;
    await this.build();
  }

  run(inputs, { signal, onProgress, mode } = {}) {
    const named = this.inputsByName(inputs);
    return this.enqueue(async () => {
      const t0 = performance.now();
      // The readback rides in the last slice, under its fence: results are ready when the run's GPU work is.
      let packed = [];
      const finish = () => { packed = this.manifest.outputs.map((t) => this.packRead(t)); };
      await this.execute(named, { signal, onProgress, mode, finish });
      const outputs = {};
      for (const p of packed) outputs[p.t.name] = this.readPacked(p);
      this.counters.runs++;
      this.counters.lastRunMs = performance.now() - t0;
      return outputs;
    });
  }

  // Leave outputs on the GPU: textures the page can sample in this same context until the next run.
  runToTexture(inputs, { signal, onProgress, mode } = {}) {
    const named = this.inputsByName(inputs);
    return this.enqueue(async () => {
      const t0 = performance.now();
      await this.execute(named, { signal, onProgress, mode });
      this.counters.runs++;
      this.counters.lastRunMs = performance.now() - t0;
      return Object.fromEntries(this.manifest.outputs.map((t) => [t.name, this.outputTexture(t)]));
    });
  }

  // An input's texture and framebuffer, for a page that renders the input on the GPU and then calls
  // run(null) / runToTexture(null). Channel c lies in lane c % 4 of slice c >> 2, slice s at texel offset
  // ((s % cols) * width, floor(s / cols) * height); texel row y is tensor row y. Write it only between runs:
  // the plan may reuse this texture for intermediates while a run is under way.
  inputTexture(name) {
    const inputs = this.manifest.inputs;
    const t = name === undefined && inputs.length === 1 ? inputs[0] : inputs.find((i) => i.name === name);
    if (!t) fail('input', `no input named "${name}"; this model's inputs are ${inputs.map((i) => `"${i.name}"`).join(', ')}.`);
    if (t.parts.length !== 1) fail('input', `input "${t.name}" is split over ${t.parts.length} textures; pass it as a Float32Array instead.`);
    const part = t.parts[0];
    return { ...this.outputTexture(t), framebuffer: this.framebuffer(part.texture), rows: part.rows };
  }

  outputTexture(t) {
    const part = t.parts[0];
    const tex = this.manifest.textures[part.texture];
    return { texture: this.textures[part.texture], textureWidth: tex.width, textureHeight: tex.height,
      shape: t.shape.slice(), channels: t.channels, height: t.height, width: t.width, cols: part.cols, slices: part.slices };
  }

  async execute(inputs, { signal, onProgress, mode, finish }) {
    if (inputs) this.upload(inputs);
    const units = this.units();
    await this.scheduler.execute(units, (pieces) => this.submitPieces(pieces), { signal, onProgress, mode, finish });
  }

  // Read any tensor kept by `webcnn compile --debug-tensors` (for per-layer verification).
  readDebugTensors(signal) {
    return this.enqueue(async () => {
      const out = {};
      for (const t of this.manifest.debugTensors || []) out[t.name] = await this.readTensor(t, signal);
      return out;
    });
  }

  stats() {
    const s = this.scheduler;
    return {
      ...this.counters,
      ...s.counters,
      budgetMs: s.budgetMs,
      mode: s.mode,
      flopsPerMs: s.rate,
      inFlight: s.inFlight.length,
      precision: this.caps.fp16 ? 'fp16' : 'fp32',
      timerQuery: !!this.caps.timer,
      parallelCompile: !!this.caps.parallelCompile,
      textures: (this.textures ? this.textures.length : 0) + (this.weightTextures ? this.weightTextures.length : 0),
      textureBytes: this.textureBytes(),
      framebuffers: this.framebuffers ? this.framebuffers.size : 0,
      buffers: this.readBuffers ? this.readBuffers.size : 0,
      programs: this.programs ? this.programs.length : 0,
      totals: this.manifest.totals,
    };
  }

  // Bytes of every texture this model allocated, by the formats it chose (fp16 activations: 8 bytes a texel).
  textureBytes() {
    if (!this.textures || !this.textures.length) return 0;
    const m = this.manifest;
    return m.textures.reduce((a, t) => a + t.width * t.height * (t.layers || 1) * (this.caps.fp16 ? 8 : 16), 0)
      + m.weights.reduce((a, w) => a + w.width * w.height * 16, 0);
  }

  set budgetMs(ms) { this.scheduler.budgetMs = ms; }
  get budgetMs() { return this.scheduler.budgetMs; }
  set mode(mode) { this.scheduler.mode = mode; }
  get mode() { return this.scheduler.mode; }

  dispose() {
    if (this.disposed) return;
    this.disposed = true;
    const gl = this.gl;
    if (this.canvas && this.canvas.removeEventListener) {
      this.canvas.removeEventListener('webglcontextlost', this.onLost);
      this.canvas.removeEventListener('webglcontextrestored', this.onRestored);
    }
    if (gl.isContextLost()) return;
    for (const t of [...(this.textures || []), ...(this.weightTextures || [])]) gl.deleteTexture(t);
    for (const fb of (this.framebuffers || new Map()).values()) gl.deleteFramebuffer(fb);
    for (const b of (this.readBuffers || new Map()).values()) gl.deleteBuffer(b);
    for (const p of this.programs || []) gl.deleteProgram(p);
    if (this.vertexShader) gl.deleteShader(this.vertexShader);
    if (this.vao) gl.deleteVertexArray(this.vao);
    this.textures = this.weightTextures = this.programs = [];
    this.framebuffers = new Map();
    this.readBuffers = new Map();
  }
}
