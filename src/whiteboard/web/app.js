// whiteboard live: camera or video file -> rectified board -> webcnn model (budgeted) -> clean board memory.
// The display redraws every animation frame; the model runs in the same WebGL2 context at whatever rate fits.
import { load } from '/runtime/webcnn.js';
import { DEFAULT_CORNERS, isConvex } from './geometry.js';
import { BoardPipeline } from './pipeline.js';

const params = new URLSearchParams(location.search);
const MODEL_URL = params.get('model') || '/model/';
const TAGGED = params.has('tag');   // test clips carry their frame number in a barcode (see whiteboard/clip.py)
const CORNERS_KEY = 'whiteboard.corners';

const $ = (id) => document.getElementById(id);
const video = $('video');
const canvas = $('output');
const stage = $('stage');
const handles = [...document.querySelectorAll('.handle')];

const state = {
  model: null, pipeline: null, stream: null, recorder: null, view: 'board', corners: loadCorners(),
  intervals: [], longFrames: [], lastFrame: null, updates: [], frameTag: -1, resultTag: -1, resultTags: [], cameraTrack: null,
  dirty: true, redraws: 0, frozen: false, losses: 0, pipelineLosses: 0, pipelineRebuilds: 0,
};

// In-page messages, one per kind (camera, model, ...): a new one of a kind replaces the old; null text clears.
// `reason` tells the problems of one kind apart (camera: permission, no-camera, ...).
const messages = new Map();
function message(kind, text, reason = kind) {
  if (text) messages.set(kind, [text, reason]); else messages.delete(kind);
  const box = $('messages');
  box.replaceChildren(...[...messages].map(([k, [t, r]]) => {
    const p = document.createElement('p');
    p.dataset.kind = k;
    p.dataset.reason = r;
    p.setAttribute('role', 'alert');
    p.textContent = t;
    return p;
  }));
}

// ----------------------------------------------------------------------------- corners

function loadCorners() {
  try {
    const c = JSON.parse(localStorage.getItem(CORNERS_KEY));
    if (Array.isArray(c) && c.length === 4 && c.every((p) => p.length === 2 && p.every((v) => v >= -0.5 && v <= 1.5)) && isConvex(c)) return c;
  } catch (e) { /* a bad entry falls back to the default */ }
  return DEFAULT_CORNERS.map((p) => p.slice());
}

function setCorners(corners, save = true) {
  state.corners = corners.map((p) => p.slice());
  handles.forEach((h, i) => {
    h.style.left = `${state.corners[i][0] * 100}%`;
    h.style.top = `${state.corners[i][1] * 100}%`;
  });
  $('quad').setAttribute('points', state.corners.map((p) => p.join(',')).join(' '));
  if (state.pipeline) state.pipeline.setCorners(state.corners);
  if (save) localStorage.setItem(CORNERS_KEY, JSON.stringify(state.corners));
}

for (const handle of handles) {
  const i = Number(handle.dataset.corner);
  handle.addEventListener('pointerdown', (e) => {
    handle.setPointerCapture(e.pointerId);
    handle.classList.add('dragging');
    e.preventDefault();
  });
  handle.addEventListener('pointermove', (e) => {
    if (!handle.hasPointerCapture(e.pointerId)) return;
    const r = stage.getBoundingClientRect();
    const next = state.corners.map((p) => p.slice());
    next[i] = [Math.min(1, Math.max(0, (e.clientX - r.left) / r.width)), Math.min(1, Math.max(0, (e.clientY - r.top) / r.height))];
    if (isConvex(next)) setCorners(next, false);
  });
  const drop = (e) => {
    if (!handle.hasPointerCapture(e.pointerId)) return;
    handle.releasePointerCapture(e.pointerId);
    handle.classList.remove('dragging');
    setCorners(state.corners);
  };
  handle.addEventListener('pointerup', drop);
  handle.addEventListener('pointercancel', drop);
}
$('reset-corners').addEventListener('click', () => setCorners(DEFAULT_CORNERS));

// ----------------------------------------------------------------------------- sources

function cameraError(e) {
  const name = e && e.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') {
    return ['permission', 'Camera permission was refused. Allow camera access for this page in the browser\'s site settings and reload, or open a video file instead.'];
  }
  if (name === 'NotFoundError' || name === 'OverconstrainedError' || name === 'DevicesNotFoundError') {
    return ['no-camera', 'No camera was found. Connect a camera and reload, or open a video file instead.'];
  }
  if (name === 'NotReadableError') {
    return ['camera-busy', 'The camera is in use by another application or could not be started. Close the other application and reload, or open a video file.'];
  }
  return ['camera-error', `The camera could not be opened (${name || 'error'}: ${e && e.message}). Open a video file instead.`];
}

async function startCamera(deviceId) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    message('camera', 'This page cannot use a camera here (camera access needs http://127.0.0.1 or https). Open a video file instead.', 'insecure');
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: deviceId ? { deviceId: { exact: deviceId } } : { width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false,
    });
    stopCamera();
    state.cameraTrack = stream.getVideoTracks()[0];
    video.removeAttribute('src');
    video.srcObject = stream;
    video.loop = false;
    await video.play().catch(() => {});
    message('camera', null);
    await listCameras(state.cameraTrack.getSettings().deviceId);
  } catch (e) {
    const [reason, text] = cameraError(e);
    message('camera', text, reason);
  }
}

function stopCamera() {
  if (video.srcObject) video.srcObject.getTracks().forEach((t) => t.stop());
  video.srcObject = null;
  state.cameraTrack = null;
}

async function listCameras(selected) {
  const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === 'videoinput');
  const select = $('source');
  select.replaceChildren(...devices.map((d, i) => {
    const option = document.createElement('option');
    option.value = d.deviceId;
    option.textContent = d.label || `camera ${i + 1}`;
    option.selected = d.deviceId === selected;
    return option;
  }));
}

$('source').addEventListener('change', (e) => startCamera(e.target.value));
$('file').addEventListener('change', (e) => {
  const file = e.target.files[0];
  if (!file) return;
  stopCamera();
  video.src = URL.createObjectURL(file);
  video.loop = true;
  video.play().then(() => message('camera', null), () => message('file', `${file.name} cannot be played by this browser; try an mp4 (H.264) or webm file.`));
});
video.addEventListener('loadedmetadata', () => {
  if (video.videoWidth) stage.style.aspectRatio = `${video.videoWidth} / ${video.videoHeight}`;
});

const frameReady = () => video.readyState >= 2 && video.videoWidth > 0;

// ----------------------------------------------------------------------------- test clips' frame numbers

let tagCanvas = null;
function readFrameTag() {
  // 10 bits, black/white blocks of 32x12 px in the bottom-left corner of a 640-wide frame.
  if (!tagCanvas) tagCanvas = new OffscreenCanvas(10, 1).getContext('2d', { willReadFrequently: true });
  const sx = video.videoWidth / 640;
  tagCanvas.drawImage(video, 0, video.videoHeight - 12 * sx, 320 * sx, 12 * sx, 0, 0, 10, 1);
  const px = tagCanvas.getImageData(0, 0, 10, 1).data;
  let tag = 0;
  for (let i = 0; i < 10; i++) if (px[i * 4 + 1] > 128) tag |= 1 << i;
  return tag;
}

// ----------------------------------------------------------------------------- the two loops

function displayLoop(ts) {
  if (state.lastFrame !== null) {
    state.intervals.push(ts - state.lastFrame);
    if (state.intervals.length > 3600) state.intervals.splice(0, 600);
    if (ts - state.lastFrame > 50 && state.longFrames.length < 1000) state.longFrames.push([state.lastFrame, ts]);
  }
  state.lastFrame = ts;
  const { pipeline } = state;
  // The camera view changes every frame; the others only when a model result lands (or the view changes).
  // Redrawing an unchanged canvas costs a software GPU a third of a frame for nothing. A captured stream
  // (recording, or a page that took whiteboard.stream) gets every frame.
  const live = pipeline && !state.model.gl.isContextLost() && state.pipelineLosses === state.losses;
  if (live && (state.dirty || state.view === 'camera' || state.stream)) {
    if (state.view === 'camera' && frameReady()) pipeline.uploadFrame(video);
    pipeline.draw(state.view);
    state.dirty = false;
    state.redraws++;
  }
  requestAnimationFrame(displayLoop);
}

// A lost WebGL context takes the pipeline's textures with it. The model rebuilds itself on its next run (a
// run under way is repeated, on an empty input): drop that result, then rebuild the pipeline (the board
// memory starts again). Nothing touches the old pipeline once a loss is seen.
canvas.addEventListener('webglcontextlost', () => { state.losses++; });

async function rebuildAfterLoss(model) {
  if (model.stats().rebuilds === state.pipelineRebuilds) await model.runToTexture(null);
  state.pipeline = new BoardPipeline(model.gl, model);
  state.pipeline.setCorners(state.corners);
  state.pipelineLosses = state.losses;
  state.pipelineRebuilds = model.stats().rebuilds;
  state.dirty = true;
}

async function modelLoop() {
  const { model } = state;
  const idle = () => new Promise((r) => requestAnimationFrame(r));
  for (;;) {
    if (!frameReady() || state.frozen || model.gl.isContextLost()) { await idle(); continue; }
    try {
      if (state.pipelineLosses !== state.losses) { await rebuildAfterLoss(model); continue; }
      const { pipeline } = state;
      if (TAGGED) state.frameTag = readFrameTag();
      pipeline.uploadFrame(video);
      pipeline.writeModelInput();
      const tag = state.frameTag;
      state.busy = true;
      // The upload and rectification took a share of this frame's GPU time that the model's budget does not
      // know about: its first slice waits for the next frame.
      await idle();
      const { probs } = await model.runToTexture(null);
      state.busy = false;
      if (state.pipelineLosses !== state.losses) continue;
      pipeline.applyResult(probs);
      state.dirty = true;
      state.resultTag = tag;
      state.resultTags.push(tag);
      state.updates.push(performance.now());
      if (state.updates.length > 100) state.updates.shift();
      $('snapshot').disabled = false;
      await idle();   // the compositing passes are this frame's GPU work; the next input is the next frame's
    } catch (e) {
      message('model', `The model stopped: ${e.message}. Reload the page.`);
      return;
    }
  }
}

function percentile(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : 0;
}

function stats() {
  const now = performance.now();
  const recent = state.intervals.slice(-120);
  const sorted = state.intervals.slice().sort((a, b) => a - b);
  const recentUpdates = state.updates.filter((t) => now - t < 60000).slice(-10);
  const m = state.model ? state.model.stats() : {};
  const period = sorted.length ? percentile(sorted, 0.5) : 1000 / 60;
  return {
    fps: recent.length ? 1000 * recent.length / recent.reduce((a, b) => a + b, 0) : 0,
    meanFps: sorted.length ? 1000 * sorted.length / sorted.reduce((a, b) => a + b, 0) : 0,
    frames: state.intervals.length,
    p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted.length ? sorted[sorted.length - 1] : 0,
    over50: state.intervals.filter((d) => d > 50).length,
    longFrames: state.longFrames.slice(),   // [start, end] of each frame over 50 ms, page clock
    updates: state.pipeline ? state.pipeline.results : 0,
    updatesPerSec: recentUpdates.length > 1 ? 1000 * (recentUpdates.length - 1) / (recentUpdates[recentUpdates.length - 1] - recentUpdates[0]) : 0,
    budgetMs: m.budgetMs || 0, budgetShare: (m.budgetMs || 0) / period, precision: m.precision,
    redraws: state.redraws, busy: !!state.busy, frozen: state.frozen, frameTag: state.frameTag, resultTag: state.resultTag, resultTags: state.resultTags.slice(),
  };
}

function showReadout() {
  const s = stats();
  $('readout').textContent = `display ${s.fps.toFixed(1)} fps (p99 ${s.p99.toFixed(1)} ms) | model ${s.updatesPerSec.toFixed(2)} updates/s `
    + `(${s.updates} so far) | frame budget ${s.budgetMs.toFixed(1)} ms = ${(100 * s.budgetShare).toFixed(0)}% of a frame | ${s.precision || ''}`;
}

// ----------------------------------------------------------------------------- snapshot and recording

function download(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

$('snapshot').addEventListener('click', () => {
  // Draw the clean board and read the canvas in the same task, before the next display frame.
  state.pipeline.draw('board');
  state.dirty = true;
  canvas.toBlob((blob) => download(blob, `whiteboard-${new Date().toISOString().replace(/[:.]/g, '-')}.png`), 'image/png');
});

$('record').addEventListener('click', () => {
  const button = $('record');
  if (state.recorder) { state.recorder.stop(); return; }
  const type = ['video/webm;codecs=vp9', 'video/webm;codecs=vp8', 'video/webm'].find((t) => MediaRecorder.isTypeSupported(t));
  const chunks = [];
  const recorder = new MediaRecorder(outputStream(false), type ? { mimeType: type } : {});
  recorder.ondataavailable = (e) => e.data.size && chunks.push(e.data);
  recorder.onstop = () => {
    download(new Blob(chunks, { type: 'video/webm' }), 'whiteboard.webm');
    state.recorder = null;
    // Capturing costs a readback per frame: stop it unless someone else took the stream.
    if (!state.streamShared) {
      state.stream.getTracks().forEach((t) => t.stop());
      state.stream = null;
    }
    button.textContent = 'Record WebM';
  };
  recorder.start(1000);
  state.recorder = recorder;
  button.textContent = 'Stop recording';
});

$('freeze').addEventListener('click', () => {
  state.frozen = !state.frozen;
  $('freeze').textContent = state.frozen ? 'Resume' : 'Freeze board';
});
$('view').addEventListener('change', (e) => {
  state.view = e.target.value;
  state.dirty = true;
  $('output-title').textContent = e.target.selectedOptions[0].textContent.replace(/^./, (c) => c.toUpperCase());
});

// The output as a MediaStream, made on first use: capturing a canvas costs a readback per frame.
function outputStream(shared = true) {
  if (!state.stream) state.stream = canvas.captureStream(30);
  if (shared) state.streamShared = true;
  return state.stream;
}

// ----------------------------------------------------------------------------- start

async function main() {
  setCorners(state.corners, false);
  const gl = canvas.getContext('webgl2', { antialias: false, depth: false, stencil: false, alpha: false, preserveDrawingBuffer: false });
  if (!gl) {
    message('no-webgl2', 'This browser has no WebGL2, which the whiteboard needs. Enable hardware acceleration in the browser settings, or use a current Chrome, Edge, Firefox or Safari.');
    $('readout').textContent = 'stopped: no WebGL2';
    return;
  }
  $('record').disabled = typeof MediaRecorder === 'undefined';
  const camera = startCamera();
  try {
    state.model = await load(MODEL_URL, {
      gl, budgetMs: 4,
      onProgress: (p) => { $('readout').textContent = `loading the model: ${p.phase} ${p.done}/${p.total}`; },
    });
    state.pipeline = new BoardPipeline(gl, state.model);
    state.pipeline.setCorners(state.corners);
    state.pipelineLosses = state.losses;
    state.pipelineRebuilds = state.model.stats().rebuilds;
  } catch (e) {
    message('model', `The model failed to load from ${MODEL_URL}: ${e.message}`);
    $('readout').textContent = 'stopped: no model';
    return;
  }
  await camera;
  requestAnimationFrame(displayLoop);
  setInterval(showReadout, 500);
  modelLoop();
}

window.whiteboard = {
  stats, setCorners, message,
  resetTiming() { state.intervals = []; state.longFrames = []; state.lastFrame = null; },
  get stream() { return outputStream(); },
  get pipeline() { return state.pipeline; },
  get model() { return state.model; },
};
main();
