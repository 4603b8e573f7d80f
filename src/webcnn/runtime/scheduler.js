// Frame-budgeted submission: each frame submit (pass, tile) draws until the learned GPU budget is used,
// then flush, fence and yield. At most one frame of work is in flight.
import { WebcnnError } from './errors.js';

const DRAW_OVERHEAD = 50000;   // cost units (FLOP-equivalents) charged per draw call
const MIN_RATE = 1e4;          // FLOP per ms: a floor so one slow frame cannot stall progress forever
const INITIAL_RATE = 5e5;      // a cautious first guess (0.5 GFLOP/s); learned from the first frames
const MAX_FRAME_SHARE = 0.9;   // the adaptive budget grows up to this share of the display's frame period
const LATE_FRAME = 1.5;        // a frame interval this many periods long is a missed frame: cut the budget
const POLL_SHARE = 0.5;        // a slice not done at the frame start is polled for up to this share of the period

export class LostContextSignal extends Error {}

function abortError(signal) {
  const reason = signal.reason;
  return reason instanceof Error ? reason : new DOMException('the run was aborted', 'AbortError');
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Resolves with the frame's timestamp (performance.now() when woken by the timer).
export function nextFrame() {
  return new Promise((resolve) => {
    let done = false;
    const finish = (ts) => { if (!done) { done = true; resolve(typeof ts === 'number' ? ts : performance.now()); } };
    const hidden = typeof document === 'undefined' || document.visibilityState === 'hidden' || typeof requestAnimationFrame === 'undefined';
    if (!hidden) requestAnimationFrame(finish);
    // Hidden pages get no animation frames: keep working on a timer.
    setTimeout(finish, hidden ? 0 : 100);
  });
}

export class Scheduler {
  constructor(gl, caps, { budgetMs = 4, mode = 'budget', adaptive = true } = {}) {
    this.gl = gl;
    this.timer = caps.timer;
    this.budgetMs = budgetMs;
    this.adaptive = adaptive;
    this.period = 1000 / 60;
    this.lastFrame = null;
    this.mode = mode;
    this.rate = INITIAL_RATE;
    this.inFlight = null;
    this.queries = [];
    this.counters = { frames: 0, draws: 0, submitted: 0, timerSamples: 0, fenceWaits: 0, lateFrames: 0 };
  }

  // GL objects of a lost context are dead: forget them, keep what was learned about speed.
  reset() {
    this.inFlight = null;
    this.queries = [];
  }

  // Learn FLOP/ms from timer queries where present, else from whether last frame's fence was done in time.
  collect() {
    const gl = this.gl;
    while (this.queries.length) {
      const { query, cost } = this.queries[0];
      if (!gl.getQueryParameter(query, gl.QUERY_RESULT_AVAILABLE)) break;
      const ns = gl.getQueryParameter(query, gl.QUERY_RESULT);
      const disjoint = gl.getParameter(this.timer.GPU_DISJOINT_EXT);
      gl.deleteQuery(query);
      this.queries.shift();
      if (!disjoint && ns > 0) {
        const sample = cost / (ns / 1e6);
        this.rate = Math.max(MIN_RATE, this.counters.timerSamples ? 0.7 * this.rate + 0.3 * sample : sample);
        this.counters.timerSamples++;
      }
    }
  }

  // Budget adaptation (budget mode, adaptive): the display's frame timing is the signal. A late frame means the
  // GPU had too much to do: cut the budget. A slice that was done by the next frame means there was room: grow it,
  // up to a share of the frame period. With the fixed 4 ms default, budget mode used a quarter of the GPU.
  adapt(ts, inTime) {
    const dt = this.lastFrame === null ? 0 : ts - this.lastFrame;
    this.lastFrame = ts;
    if (!this.adaptive || dt <= 0 || dt > 1000) return;
    if (dt > LATE_FRAME * this.period) {
      this.budgetMs = Math.max(1, this.budgetMs * 0.7);
      this.counters.lateFrames++;
    } else {
      this.period = 0.95 * this.period + 0.05 * dt;
      if (inTime) this.budgetMs = Math.min(MAX_FRAME_SHARE * this.period, this.budgetMs + 0.25);
    }
  }

  signaled() {
    const gl = this.gl;
    const status = gl.clientWaitSync(this.inFlight.fence, 0, 0);
    if (status === gl.WAIT_FAILED) throw new LostContextSignal('fence wait failed');
    return status === gl.ALREADY_SIGNALED || status === gl.CONDITION_SATISFIED;
  }

  // A slice not done at the frame start is polled briefly within the frame rather than losing the whole frame.
  async fenceDoneSoon(ts) {
    if (!this.inFlight || this.signaled()) return this.fenceDone();
    while (performance.now() - ts < POLL_SHARE * this.period) {
      await sleep(1);
      if (this.signaled()) return this.fenceDone();
    }
    return this.fenceDone();
  }

  fenceDone() {
    if (!this.inFlight) return true;
    const gl = this.gl;
    if (this.signaled()) {
      gl.deleteSync(this.inFlight.fence);
      // Without a timer, a fence that is done by the next frame means the budget had room: probe upwards.
      if (!this.timer && this.inFlight.frames === 0) this.rate *= 1.15;
      this.inFlight = null;
      return true;
    }
    if (!this.timer) this.rate = Math.max(MIN_RATE, this.rate * 0.8);
    this.inFlight.frames++;
    this.counters.fenceWaits++;
    return false;
  }

  // units: [{cost}]; submit(start, end) issues draws for units[start..end). Resolves when the GPU is done.
  async execute(count, cost, submit, { signal, onProgress, mode = this.mode } = {}) {
    const gl = this.gl;
    const throughput = mode === 'throughput';
    this.lastFrame = null;   // gaps between runs (upload, readback, the app's own work) are not late frames
    let next = 0;
    while (next < count) {
      if (signal && signal.aborted) throw abortError(signal);
      let ts = performance.now();
      if (!throughput || this.inFlight) ts = await nextFrame();
      if (gl.isContextLost()) throw new LostContextSignal('context lost');
      if (this.timer) this.collect();
      if (!throughput) this.adapt(ts, !this.inFlight || this.signaled());
      const woke = performance.now();
      if (!(throughput ? this.fenceDone() : await this.fenceDoneSoon(woke))) continue;
      // A slice submitted late in the frame (after polling its predecessor) gets only the rest of the frame's share.
      const late = Math.min(1, (performance.now() - woke) / this.period);
      const budget = throughput ? Infinity : this.budgetMs * (1 - late) * this.rate;
      let spent = 0;
      const start = next;
      while (next < count && (next === start || spent + cost(next) + DRAW_OVERHEAD <= budget)) {
        spent += cost(next) + DRAW_OVERHEAD;
        next++;
      }
      let query = null;
      if (this.timer && !throughput) {
        query = gl.createQuery();
        gl.beginQuery(this.timer.TIME_ELAPSED_EXT, query);
      }
      this.counters.draws += submit(start, next);
      if (query) {
        gl.endQuery(this.timer.TIME_ELAPSED_EXT);
        this.queries.push({ query, cost: spent });
      }
      const fence = gl.fenceSync(gl.SYNC_GPU_COMMANDS_COMPLETE, 0);
      gl.flush();
      this.inFlight = { fence, frames: 0 };
      this.counters.frames++;
      this.counters.submitted += next - start;
      if (onProgress) onProgress({ phase: 'run', done: next, total: count });
    }
    while (!this.fenceDone()) {
      if (signal && signal.aborted) throw abortError(signal);
      await nextFrame();
      if (gl.isContextLost()) throw new LostContextSignal('context lost');
    }
    if (this.timer) this.collect();
  }

  // Poll a fence across frames without ever blocking the main thread.
  async waitFence(fence, signal) {
    const gl = this.gl;
    gl.flush();
    for (;;) {
      if (gl.isContextLost()) throw new LostContextSignal('context lost');
      const status = gl.clientWaitSync(fence, 0, 0);
      if (status === gl.ALREADY_SIGNALED || status === gl.CONDITION_SATISFIED) break;
      if (status === gl.WAIT_FAILED) throw new LostContextSignal('fence wait failed');
      if (signal && signal.aborted) { gl.deleteSync(fence); throw abortError(signal); }
      await nextFrame();
    }
    gl.deleteSync(fence);
  }
}

export { WebcnnError };
