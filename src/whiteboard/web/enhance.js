// Headless page behind `whiteboard enhance`: the live app's pipeline and shaders, driven frame by frame.
import { load } from '/runtime/webcnn.js';
import { BoardPipeline } from './pipeline.js';

const canvas = document.getElementById('output');
let model = null;
let pipeline = null;

function describe(e) {
  return { message: String(e && e.message || e), code: e && e.code };
}

async function decode(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return createImageBitmap(new Blob([bytes]), { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
}

window.enhancer = {
  // Load the model bundle and size the output; corners are normalised frame coordinates (TL, TR, BR, BL).
  async init({ bundle, outWidth, outHeight, corners }) {
    try {
      canvas.width = outWidth;
      canvas.height = outHeight;
      const gl = canvas.getContext('webgl2', { antialias: false, depth: false, alpha: false, preserveDrawingBuffer: true });
      if (!gl) throw new Error('no WebGL2 in this browser');
      model = await load(bundle, { gl, mode: 'throughput' });
      pipeline = new BoardPipeline(gl, model, { outWidth, outHeight });
      if (corners) pipeline.setCorners(corners);
      return { ok: true, precision: model.stats().precision };
    } catch (e) {
      return { error: describe(e) };
    }
  },

  // One frame (PNG/JPEG bytes, base64) through the pipeline; returns the board memory as a PNG data URL.
  async process(base64, { rate = 1 } = {}) {
    try {
      const bitmap = await decode(base64);
      pipeline.uploadFrame(bitmap);
      bitmap.close();
      pipeline.writeModelInput();
      const { probs } = await model.runToTexture(null, { mode: 'throughput' });
      pipeline.applyResult(probs, { rate });
      pipeline.draw('board');
      return { png: canvas.toDataURL('image/png') };
    } catch (e) {
      return { error: describe(e) };
    }
  },
};
document.getElementById('status').textContent = 'ready';
