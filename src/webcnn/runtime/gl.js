// Plain functions over a WebGL2 context: capabilities, textures, framebuffers, programs.
import { fail } from './errors.js';

const VERTEX_SHADER = `#version 300 es
void main() {
  vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}`;

export function getContext({ canvas, gl }) {
  if (gl) {
    if (typeof WebGL2RenderingContext === 'undefined' || !(gl instanceof WebGL2RenderingContext)) {
      fail('no-webgl2', 'webcnn needs a WebGL2 context; the context passed in is not WebGL2.');
    }
    return gl;
  }
  const target = canvas || (typeof OffscreenCanvas !== 'undefined' ? new OffscreenCanvas(1, 1) : document.createElement('canvas'));
  const context = target.getContext('webgl2', { antialias: false, depth: false, stencil: false, preserveDrawingBuffer: false, powerPreference: 'high-performance' });
  if (!context) fail('no-webgl2', 'this browser or device has no WebGL2; webcnn needs WebGL2 (enable hardware acceleration, or use a browser that supports WebGL2).');
  return context;
}

export function capabilities(gl, precision) {
  const floatRender = !!gl.getExtension('EXT_color_buffer_float');
  const halfRender = floatRender || !!gl.getExtension('EXT_color_buffer_half_float');
  let fp16;
  if (precision === 'fp32') {
    if (!floatRender) fail('no-float-render', 'precision "fp32" needs EXT_color_buffer_float, which this device lacks; use precision "fp16" or "auto".');
    fp16 = false;
  } else if (precision === 'fp16') {
    if (!halfRender) fail('no-float-render', 'this device cannot render to float textures (neither EXT_color_buffer_float nor EXT_color_buffer_half_float); webcnn cannot run here.');
    fp16 = true;
  } else {
    if (!halfRender) fail('no-float-render', 'this device cannot render to float textures (neither EXT_color_buffer_float nor EXT_color_buffer_half_float); webcnn cannot run here.');
    fp16 = !floatRender;
  }
  return {
    fp16,
    maxTextureSize: gl.getParameter(gl.MAX_TEXTURE_SIZE),
    maxTextureUnits: gl.getParameter(gl.MAX_TEXTURE_IMAGE_UNITS),
    maxDrawBuffers: gl.getParameter(gl.MAX_DRAW_BUFFERS),
    parallelCompile: gl.getExtension('KHR_parallel_shader_compile'),
    timer: gl.getExtension('EXT_disjoint_timer_query_webgl2'),
  };
}

// layers > 1: an array texture (a phase-split activation: pixel x in layer x % layers).
export function createTexture(gl, width, height, internalFormat, layers = 1) {
  const tex = gl.createTexture();
  const target = layers > 1 ? gl.TEXTURE_2D_ARRAY : gl.TEXTURE_2D;
  gl.bindTexture(target, tex);
  if (layers > 1) gl.texStorage3D(target, 1, internalFormat, width, height, layers);
  else gl.texStorage2D(target, 1, internalFormat, width, height);
  gl.texParameteri(target, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
  gl.texParameteri(target, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
  gl.texParameteri(target, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
  gl.texParameteri(target, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  if (layers > 1) gl.bindTexture(target, null);
  return tex;
}

export function resetUnpackState(gl) {
  gl.bindBuffer(gl.PIXEL_UNPACK_BUFFER, null);
  gl.pixelStorei(gl.UNPACK_ALIGNMENT, 4);
  gl.pixelStorei(gl.UNPACK_ROW_LENGTH, 0);
  gl.pixelStorei(gl.UNPACK_SKIP_ROWS, 0);
  gl.pixelStorei(gl.UNPACK_SKIP_PIXELS, 0);
  gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
  gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
}

export function uploadRows(gl, tex, width, y0, rows, data) {
  gl.bindTexture(gl.TEXTURE_2D, tex);
  gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, y0, width, rows, gl.RGBA, gl.FLOAT, data);
}

// An array texture of n layers gets n colour attachments, one per layer: a fragment writes n pixels.
export function createFramebuffer(gl, tex, layers = 1) {
  const fb = gl.createFramebuffer();
  gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
  if (layers > 1) {
    const buffers = [];
    for (let i = 0; i < layers; i++) {
      gl.framebufferTextureLayer(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0 + i, tex, 0, i);
      buffers.push(gl.COLOR_ATTACHMENT0 + i);
    }
    gl.drawBuffers(buffers);
  } else {
    gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, tex, 0);
  }
  const status = gl.checkFramebufferStatus(gl.FRAMEBUFFER);
  gl.bindFramebuffer(gl.FRAMEBUFFER, null);
  if (status !== gl.FRAMEBUFFER_COMPLETE && !gl.isContextLost()) {
    fail('no-float-render', `float textures are not renderable on this device (framebuffer status 0x${status.toString(16)}); try precision "fp16".`);
  }
  return fb;
}

function withLineNumbers(source, log) {
  const bad = new Set([...log.matchAll(/ERROR: \d+:(\d+)/g)].map((m) => Number(m[1])));
  return source.split('\n').map((line, i) => `${bad.has(i + 1) ? '>>' : '  '}${String(i + 1).padStart(4)}: ${line}`).join('\n');
}

// Start compiling; the caller polls `programReady` so that with KHR_parallel_shader_compile nothing blocks.
export function startProgram(gl, fragmentSource, vertexShader) {
  const fs = gl.createShader(gl.FRAGMENT_SHADER);
  gl.shaderSource(fs, fragmentSource);
  gl.compileShader(fs);
  const program = gl.createProgram();
  gl.attachShader(program, vertexShader);
  gl.attachShader(program, fs);
  gl.linkProgram(program);
  return { program, fs, source: fragmentSource };
}

export function programReady(gl, pending, parallel) {
  return !parallel || gl.getProgramParameter(pending.program, parallel.COMPLETION_STATUS_KHR);
}

export function finishProgram(gl, pending, name, samplers) {
  const { program, fs, source } = pending;
  if (!gl.getProgramParameter(program, gl.LINK_STATUS) && !gl.isContextLost()) {
    const log = gl.getShaderInfoLog(fs) || gl.getProgramInfoLog(program) || '';
    fail('shader', `program ${name} failed to compile: ${log}\n${withLineNumbers(source, log)}`);
  }
  gl.deleteShader(fs);
  gl.useProgram(program);
  samplers.forEach((s, unit) => gl.uniform1i(gl.getUniformLocation(program, s), unit));
  return program;
}

export function createVertexShader(gl) {
  const vs = gl.createShader(gl.VERTEX_SHADER);
  gl.shaderSource(vs, VERTEX_SHADER);
  gl.compileShader(vs);
  return vs;
}
