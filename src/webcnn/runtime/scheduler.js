// Frame-budgeted submission. A run is a queue of (pass, tile) units. Each animation frame gets one slice of draws
// worth the frame's GPU budget (in ms, from each pass's learned speed), flushed behind a fence. The GPU's progress is
// tracked on a clock of estimated finish times, since during a run fences are checked only once a frame (polling them
// between frames cost SwiftShader a third of its speed; only a run's end polls, see settle); fences bound how far
// that estimate may run ahead. Each pass's speed comes from timer queries where present.
import { WebcnnError } from './errors.js';

const DRAW_OVERHEAD = 50000;   // cost units (FLOP-equivalents) charged per draw call
const MIN_RATE = 1e4;          // FLOP per ms: a floor so one slow frame cannot stall progress forever
const INITIAL_RATE = 5e5;      // a cautious first guess (0.5 GFLOP/s); learned from the first frames
const MAX_FRAME_SHARE = 0.9;   // the adaptive budget grows up to this share of the display's frame period
const LATE_FRAME = 1.5;        // a frame interval this many periods long is a missed frame: cut the budget
const LATE_START = 0.6;        // a frame further gone than this share of its period gets no slice
const MAX_QUEUED = 2;          // unsignalled slices worth more than this many budgets: wait (the estimates are off)
const MIN_SLICE_MS = 0.5;      // less room than this is not worth a slice
const SETTLE_POLL_MS = 2;      // at the end of a run, how often to check its last fence (each check costs the GPU)
const LEARN_SAMPLES = 3;       // time each pass on its own this many times before timing whole slices

export class LostContextSignal extends Error {}

function abortError(signal) {
  const reason = signal.reason;
  return reason instanceof Error ? reason : new DOMException('the run was aborted', 'AbortError');
}

// Whether the GPU has passed a fence, without waiting; a failed wait means the context is gone.
export function fenceSignaled(gl, sync) {
  const status = gl.clientWaitSync(sync, 0, 0);
  if (status === gl.WAIT_FAILED) throw new LostContextSignal('fence wait failed');
  return status === gl.ALREADY_SIGNALED || status === gl.CONDITION_SATISFIED;
}

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
  constructor(gl, caps, { budgetMs = 4, mode = 'budget', adaptive = true, trace = false } = {}) {
    this.gl = gl;
    this.timer = caps.timer;
    this.budgetMs = budgetMs;
    this.adaptive = adaptive;
    this.period = 1000 / 60;
    this.lastFrame = null;
    this.frame = { start: -Infinity, used: true };   // the animation frame we last woke in (start: its vsync time)
    this.gpuFree = 0;                    // when the GPU should be done with everything submitted (estimated)
    this.tick = null;                    // the next frame's callback, registered in advance
    this.mode = mode;
    this.rate = INITIAL_RATE;            // FLOP/ms over all work
    this.passRate = new Map();           // FLOP/ms of each pass (unit key), from timer queries
    this.passSamples = new Map();        // how many times each pass was timed on its own
    this.inFlight = [];                  // submitted slices, oldest first: {fence, ms (estimated GPU time), frames}
    this.queries = [];
    this.counters = { frames: 0, draws: 0, submitted: 0, timerSamples: 0, fenceWaits: 0, lateFrames: 0 };
    // Debug flag: one row per slice {at: submitted, frame: its frame's start, budget, room, est (ms), pieces, draws,
    // gpu: timer ms, done: when its fence was seen signalled, groups: [[pass, cost, estimated ms]]}.
    this.trace = trace ? [] : null;
  }

  // Between awaits: stop on an abort, or on a lost context (the model rebuilds and repeats the run).
  check(signal) {
    if (signal && signal.aborted) throw abortError(signal);
    if (this.gl.isContextLost()) throw new LostContextSignal('context lost');
  }

  // GL objects of a lost context are dead: forget them, keep what was learned about speed.
  reset() {
    this.inFlight = [];
    this.queries = [];
  }

  rateOf(key) {
    return this.passRate.get(key) || this.rate;
  }

  // Timer query results. A query spans a group of one pass while that pass is new, and then a whole slice (a query
  // per group cost SwiftShader ~10% of a run): a slice's time corrects each pass in it by the slice's error, in
  // proportion to the pass's share of the estimate.
  collect() {
    const gl = this.gl;
    while (this.queries.length) {
      const { query, groups, row } = this.queries[0];
      if (!gl.getQueryParameter(query, gl.QUERY_RESULT_AVAILABLE)) break;
      const ms = gl.getQueryParameter(query, gl.QUERY_RESULT) / 1e6;
      const disjoint = gl.getParameter(this.timer.GPU_DISJOINT_EXT);
      gl.deleteQuery(query);
      this.queries.shift();
      if (row) row.gpu += ms;
      if (!disjoint && ms > 0) this.learn(groups, ms);
    }
  }

  // groups: [{key, cost, ms (estimated)}] timed together at `ms`.
  learn(groups, ms) {
    const est = groups.reduce((a, g) => a + g.ms, 0);
    const cost = groups.reduce((a, g) => a + g.cost, 0);
    for (const { key, ms: groupMs } of groups) {
      const prev = this.passRate.get(key);
      // A pass already timed on its own takes its share of the error; one never timed alone (throughput mode times
      // only whole runs) takes all of it, so that a run's estimate converges as a whole.
      const known = (this.passSamples.get(key) || 0) >= LEARN_SAMPLES;
      const rate = (prev || this.rate) * (est / ms) ** ((prev ? 0.5 : 1) * (known ? groupMs / est : 1));
      this.passRate.set(key, Math.max(MIN_RATE, rate));
      if (groups.length === 1) this.passSamples.set(key, (this.passSamples.get(key) || 0) + 1);
    }
    const sample = Math.max(MIN_RATE, cost / ms);
    this.rate = this.counters.timerSamples ? 0.9 * this.rate + 0.1 * sample : sample;
    this.counters.timerSamples++;
  }

  // Budget adaptation (budget mode, adaptive): the display's frame timing is the signal. A late frame means the
  // GPU had too much to do: cut the budget. A frame on time means there was room: grow it, up to a share of the
  // frame period.
  adapt(ts) {
    const dt = this.lastFrame === null ? 0 : ts - this.lastFrame;
    this.lastFrame = ts;
    if (!this.adaptive || dt <= 0 || dt > 1000) return;
    if (dt > LATE_FRAME * this.period) {
      // A gentle cut: a late frame also comes from CPU contention (software GPUs), and 0.7 left 40% of frames idle.
      this.budgetMs = Math.max(1, this.budgetMs * 0.85);
      this.counters.lateFrames++;
    } else {
      this.period = 0.95 * this.period + 0.05 * dt;
      this.budgetMs = Math.min(MAX_FRAME_SHARE * this.period, this.budgetMs + 0.25);
    }
  }

  // Drop the slices the GPU has finished (fences signal in order). Without a timer, a slice done by the next frame
  // means the estimate had room (probe upwards); one that is not means it was too optimistic.
  retire() {
    while (this.inFlight.length && fenceSignaled(this.gl, this.inFlight[0].fence)) {
      const slice = this.inFlight.shift();
      this.gl.deleteSync(slice.fence);
      if (slice.row) slice.row.done = performance.now();
      if (!this.timer && slice.frames === 0) this.rate *= 1.05;
    }
    // the GPU is idle: an estimate that ran past now was too slow
    if (!this.inFlight.length) this.gpuFree = Math.min(this.gpuFree, performance.now());
    return this.inFlight.length === 0;
  }

  inFlightMs() {
    return this.inFlight.reduce((a, s) => a + s.ms, 0);
  }

  // Wait for the next animation frame. Its callback is registered at the previous wake, so that polling late into a
  // frame cannot skip the next one (which would read as a late frame); one that fired long ago is stale.
  async wake(signal) {
    let ts = await (this.tick || nextFrame());
    if (performance.now() - ts > this.period) ts = await nextFrame();
    this.tick = nextFrame();
    this.check(signal);
    this.frame = { start: ts, used: false };
    if (this.timer) this.collect();
    if (!this.retire()) {
      this.inFlight[0].frames++;
      this.counters.fenceWaits++;
      if (!this.timer) this.rate = Math.max(MIN_RATE, this.rate * 0.8);
    }
    return ts;
  }

  // The room for this frame's slice (ms): the budget, less what passed of the frame and the estimated backlog.
  room() {
    const now = performance.now();
    const late = (now - this.frame.start) / this.period;
    if (this.frame.used || late >= LATE_START || this.inFlightMs() > MAX_QUEUED * this.budgetMs) return 0;
    return this.budgetMs * (1 - late) - Math.max(0, this.gpuFree - now);
  }

  // Take the next pieces of the queue that fit `budget` ms, grouped by unit key: [{key, pieces, cost}], where a
  // piece is [unit, row0, row1]. A unit's rows (its scissor band) split so that one tile never overfills a frame;
  // the first piece always moves at least a row.
  take(units, pos, budget) {
    const groups = [];
    let ms = 0;
    while (pos.unit < units.length) {
      const { cost, rows, key } = units[pos.unit];
      const left = rows - pos.row;
      const rate = this.rateOf(key);
      const rowMs = cost / rows / rate;
      const drawMs = DRAW_OVERHEAD / rate;
      let n = left;
      if (ms + drawMs + rowMs * left > budget) {
        n = Math.min(left, Math.floor((budget - ms - drawMs) / rowMs));
        if (n < 1) {
          if (groups.length) break;
          n = 1;
        }
      }
      let group = groups[groups.length - 1];
      if (!group || group.key !== key) groups.push(group = { key, pieces: [], cost: 0, ms: 0 });
      group.pieces.push([pos.unit, pos.row, pos.row + n]);
      group.cost += DRAW_OVERHEAD + (cost / rows) * n;
      group.ms += drawMs + rowMs * n;
      ms += drawMs + rowMs * n;
      pos.row += n;
      if (pos.row >= rows) { pos.unit++; pos.row = 0; }
      if (n < left) break;
    }
    return { groups, ms };
  }

  submitSlice(units, pos, room, submit, finish, timed) {
    const gl = this.gl;
    const { groups, ms } = this.take(units, pos, room);
    const row = this.trace ? { at: performance.now(), frame: this.frame.start, budget: this.budgetMs, room, est: ms, gpu: 0, groups: [] } : null;
    let draws = 0;
    let pieces = 0;
    // timed: 'passes' (each pass on its own while it is new, then whole slices), 'slice' (one query), or false
    const learning = timed === 'passes' && groups.some((g) => (this.passSamples.get(g.key) || 0) < LEARN_SAMPLES);
    const spans = timed && this.timer ? (learning ? groups.map((g) => [g]) : [groups]) : [];
    for (const span of spans.length ? spans : [groups]) {
      const query = spans.length ? gl.createQuery() : null;
      if (query) gl.beginQuery(this.timer.TIME_ELAPSED_EXT, query);
      for (const group of span) {
        draws += submit(group.pieces);
        pieces += group.pieces.length;
      }
      if (query) {
        gl.endQuery(this.timer.TIME_ELAPSED_EXT);
        this.queries.push({ query, groups: span, row });
      }
    }
    if (row) row.groups = groups.map((g) => [g.key, g.cost, g.ms]);
    if (pos.unit >= units.length && finish) finish();
    const fence = gl.fenceSync(gl.SYNC_GPU_COMMANDS_COMPLETE, 0);
    gl.flush();
    this.inFlight.push({ fence, ms, frames: 0, row });
    this.gpuFree = Math.max(performance.now(), this.gpuFree) + ms;
    this.frame.used = true;
    this.counters.frames++;
    this.counters.draws += draws;
    this.counters.submitted += pieces;
    if (row) { row.pieces = pieces; row.draws = draws; this.trace.push(row); }
  }

  // units: [{cost, rows, key}]; submit(pieces) issues the draws of [[unit, row0, row1], ...] and returns how many.
  // finish() runs right after the last draws, inside the same slice and fence (to start reading outputs back).
  // Resolves when the GPU is done with all of it.
  async execute(units, submit, { signal, onProgress, mode = this.mode, finish } = {}) {
    const throughput = mode === 'throughput';
    this.lastFrame = null;   // gaps between runs (upload, readback, the app's own work) are not late frames
    const pos = { unit: 0, row: 0 };
    while (pos.unit < units.length) {
      this.check(signal);
      if (throughput) {
        if (this.inFlight.length) {
          await this.wake(signal);
          continue;
        }
        // one query for the whole run: its end can then be awaited on a timer (settle), not on the next frame,
        // which a busy software GPU delays
        this.submitSlice(units, pos, Infinity, submit, finish, 'slice');
      } else {
        const room = this.room();
        if (room < MIN_SLICE_MS) {
          this.adapt(await this.wake(signal));
          continue;
        }
        this.submitSlice(units, pos, room, submit, finish, 'passes');
      }
      if (onProgress) onProgress({ phase: 'run', done: pos.unit, total: units.length });
    }
    if (!units.length && finish) finish();
    while (this.inFlight.length) await this.settle(signal);
    if (this.timer) this.collect();
  }

  // The end of a run (either mode): check its last fences on a timer from when they should have passed, so that
  // the caller's next run can start within a frame. Chromium updates a fence's status only after a poll round trip,
  // so a fence checked once a frame is seen a frame or two after the GPU is done: that cost a run of the whiteboard
  // U-Net three frames. Polling stops at a frame's worth past the estimate (the estimate was wrong; each check costs
  // the GPU).
  async settle(signal) {
    const now = performance.now();
    if (now > this.gpuFree + this.period) {
      this.adapt(await this.wake(signal));
      return;
    }
    // at least once a period: an unlearned estimate (a first run) can be seconds too long
    const wait = Math.min(this.period, Math.max(SETTLE_POLL_MS, this.gpuFree - now + 0.5));
    await new Promise((resolve) => setTimeout(resolve, wait));
    this.check(signal);
    if (this.retire() && performance.now() - this.frame.start < this.period) this.frame.used = false;
  }

  // Poll a fence across frames without ever blocking the main thread.
  async waitFence(fence, signal) {
    const gl = this.gl;
    gl.flush();
    for (;;) {
      if (gl.isContextLost()) throw new LostContextSignal('context lost');
      if (fenceSignaled(gl, fence)) break;
      if (signal && signal.aborted) { gl.deleteSync(fence); throw abortError(signal); }
      await nextFrame();
    }
    gl.deleteSync(fence);
  }
}

export { WebcnnError };
