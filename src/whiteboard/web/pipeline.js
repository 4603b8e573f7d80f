// The whiteboard pipeline on the GPU, in the WebGL2 context the webcnn model runs in:
//   frame -> rectify (4 corners) -> model input          (runModelInput)
//   probs -> classes, illumination, enhance, board memory (applyResult, once per model result)
//   board memory -> canvas                                (draw, when the view changes)
// Offscreen textures keep image row 0 at texel row 0; only drawing to the canvas flips.
import { squareToQuad } from './geometry.js';

const VERTEX = `#version 300 es
void main() {
  vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}`;

const HEADER = `#version 300 es
precision highp float;
precision highp sampler2D;
uniform vec2 uSize;
out vec4 outColor;
`;

// Board space (u, v in [0,1], v down) -> frame texture coordinates through the corners' homography.
const RECTIFY = `
uniform vec3 uHx, uHy, uHw;
vec2 frameCoord(vec2 uv) {
  vec3 p = vec3(uv, 1.0);
  return vec2(dot(uHx, p), dot(uHy, p)) / dot(uHw, p);
}`;

const SHADERS = {
  // The camera frame, rectified; alpha is the value written to the 4th lane (0 for the model's input).
  rectify: `${RECTIFY}
uniform sampler2D uFrame;
uniform float uAlpha;
void main() {
  outColor = vec4(texture(uFrame, frameCoord(gl_FragCoord.xy / uSize)).rgb, uAlpha);
}`,

  // Model probabilities (board, ink, foreground) to a filterable texture.
  classes: `
uniform sampler2D uProbs;
void main() {
  outColor = vec4(texelFetch(uProbs, ivec2(gl_FragCoord.xy), 0).rgb, 1.0);
}`,

  // Foreground anywhere within ~8 px, at quarter resolution (cheap): the memory is never written next to a
  // person's edge, where the model is least sure.
  near: `
uniform sampler2D uClasses;
void main() {
  ivec2 size = textureSize(uClasses, 0);
  ivec2 centre = ivec2(gl_FragCoord.xy) * 4 + 2;
  float near = 0.0;
  for (int y = -8; y <= 8; y += 2) {
    for (int x = -8; x <= 8; x += 2) {
      near = max(near, texelFetch(uClasses, clamp(centre + ivec2(x, y), ivec2(0), size - 1), 0).b);
    }
  }
  outColor = vec4(near);
}`,

  // Illumination, step 1: average colour of the confidently-board pixels in each 16x16 block, premultiplied
  // by their share (rgb * w, w) so that blurring and dividing later fills the holes left by ink and people.
  gather: `
uniform sampler2D uFrame;
uniform sampler2D uClasses;
uniform sampler2D uNear;
const int BLOCK = 16;
void main() {
  ivec2 size = textureSize(uFrame, 0);
  ivec2 origin = ivec2(gl_FragCoord.xy) * BLOCK;
  vec4 acc = vec4(0.0);
  for (int y = 0; y < BLOCK; y += 2) {
    for (int x = 0; x < BLOCK; x += 2) {
      ivec2 q = min(origin + ivec2(x, y), size - 1);
      float w = texelFetch(uClasses, q, 0).r * (1.0 - texelFetch(uNear, q / 4, 0).r);
      acc += vec4(texelFetch(uFrame, q, 0).rgb * w, w);
    }
  }
  outColor = acc / float(BLOCK * BLOCK / 4);
}`,

  // Illumination, step 2: separable Gaussian blur of the premultiplied block averages.
  blur: `
uniform sampler2D uSource;
uniform ivec2 uStep;
uniform float uSigma;
void main() {
  ivec2 size = textureSize(uSource, 0);
  ivec2 p = ivec2(gl_FragCoord.xy);
  int radius = int(ceil(2.5 * uSigma));
  vec4 acc = vec4(0.0);
  float total = 0.0;
  for (int i = -radius; i <= radius; i++) {
    float w = exp(-0.5 * float(i * i) / (uSigma * uSigma));
    acc += w * texelFetch(uSource, clamp(p + uStep * i, ivec2(0), size - 1), 0);
    total += w;
  }
  outColor = acc / total;
}`,

  // One model result into the board memory: divide out the illumination, whiten the board, stretch and
  // saturate the ink; write where the board is visible, keep the last-seen content where a person is.
  enhance: `
uniform sampler2D uFrame;
uniform sampler2D uClasses;
uniform sampler2D uFine;
uniform sampler2D uCoarse;
uniform sampler2D uMemory;
uniform sampler2D uNear;
uniform float uRate;
vec3 illumination(vec2 uv) {
  vec4 f = texture(uFine, uv);
  vec4 c = texture(uCoarse, uv);
  if (c.a < 1e-4) return vec3(0.8);
  return mix(c.rgb / c.a, f.rgb / max(f.a, 1e-6), smoothstep(0.02, 0.15, f.a));
}
void main() {
  vec2 uv = gl_FragCoord.xy / uSize;
  vec4 k = texture(uClasses, uv);
  vec3 n = clamp(texture(uFrame, uv).rgb / max(illumination(uv), vec3(0.02)), 0.0, 1.0);
  float top = max(max(n.r, n.g), n.b);
  vec3 ink = clamp((n - 0.5 * max(top, 0.6)) * 1.6 + 0.05, 0.0, 1.0);
  float grey = (ink.r + ink.g + ink.b) / 3.0;
  ink = clamp(grey + (ink - grey) * 1.5, 0.0, 1.0);
  float inkShare = k.g / max(k.r + k.g, 1e-3);
  vec3 clean = mix(vec3(1.0), ink, smoothstep(0.35, 0.65, inkShare));
  float visible = 1.0 - smoothstep(0.3, 0.6, texture(uNear, uv).r);
  vec4 previous = texelFetch(uMemory, ivec2(gl_FragCoord.xy), 0);
  outColor = vec4(mix(previous.rgb, clean, visible * uRate), max(previous.a, visible));
}`,

  // The canvas (flipped: its row 0 is at the bottom). Three views, one small program each: per-frame work
  // on a software GPU is dear.
  showBoard: `
uniform sampler2D uMemory;
void main() {
  outColor = vec4(texture(uMemory, vec2(gl_FragCoord.x / uSize.x, 1.0 - gl_FragCoord.y / uSize.y)).rgb, 1.0);
}`,

  showCamera: `${RECTIFY}
uniform sampler2D uFrame;
void main() {
  outColor = vec4(texture(uFrame, frameCoord(vec2(gl_FragCoord.x / uSize.x, 1.0 - gl_FragCoord.y / uSize.y))).rgb, 1.0);
}`,

  showClasses: `
uniform sampler2D uModelFrame;
uniform sampler2D uClasses;
void main() {
  vec2 uv = vec2(gl_FragCoord.x / uSize.x, 1.0 - gl_FragCoord.y / uSize.y);
  vec4 k = texture(uClasses, uv);
  vec3 tint = k.r * vec3(0.92) + k.g * vec3(0.1, 0.1, 0.65) + k.b * vec3(0.95, 0.5, 0.1);
  outColor = vec4(mix(texture(uModelFrame, uv).rgb, tint, 0.6), 1.0);
}`,
};

export const VIEWS = ['board', 'camera', 'classes'];

function compile(gl, vertexShader, name, body) {
  const fs = gl.createShader(gl.FRAGMENT_SHADER);
  gl.shaderSource(fs, HEADER + body);
  gl.compileShader(fs);
  const program = gl.createProgram();
  gl.attachShader(program, vertexShader);
  gl.attachShader(program, fs);
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS) && !gl.isContextLost()) {
    throw new Error(`whiteboard shader "${name}" failed: ${gl.getShaderInfoLog(fs) || gl.getProgramInfoLog(program)}`);
  }
  gl.deleteShader(fs);
  const uniforms = {};
  const count = gl.getProgramParameter(program, gl.ACTIVE_UNIFORMS);
  for (let i = 0; i < count; i++) {
    const info = gl.getActiveUniform(program, i);
    uniforms[info.name] = { location: gl.getUniformLocation(program, info.name), type: info.type };
  }
  return { program, uniforms };
}

function texture(gl, width, height, format, filter) {
  const tex = gl.createTexture();
  gl.bindTexture(gl.TEXTURE_2D, tex);
  gl.texStorage2D(gl.TEXTURE_2D, 1, format, width, height);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, filter);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, filter);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
  gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  const fb = gl.createFramebuffer();
  gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
  gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, tex, 0);
  gl.bindFramebuffer(gl.FRAMEBUFFER, null);
  return { tex, fb, width, height };
}

export class BoardPipeline {
  // outWidth x outHeight: the board memory and output; the model's input size comes from the model.
  constructor(gl, model, { outWidth, outHeight } = {}) {
    this.gl = gl;
    this.model = model;
    const input = model.inputTexture();
    this.modelWidth = input.width;
    this.modelHeight = input.height;
    this.outWidth = outWidth || input.width;
    this.outHeight = outHeight || input.height;
    const vs = gl.createShader(gl.VERTEX_SHADER);
    gl.shaderSource(vs, VERTEX);
    gl.compileShader(vs);
    this.programs = Object.fromEntries(Object.entries(SHADERS).map(([name, body]) => [name, compile(gl, vs, name, body)]));
    gl.deleteShader(vs);
    const bw = Math.ceil(this.modelWidth / 16), bh = Math.ceil(this.modelHeight / 16);
    this.frame = { tex: gl.createTexture(), width: 0, height: 0 };
    gl.bindTexture(gl.TEXTURE_2D, this.frame.tex);
    for (const [k, v] of [[gl.TEXTURE_MIN_FILTER, gl.LINEAR], [gl.TEXTURE_MAG_FILTER, gl.LINEAR], [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]]) gl.texParameteri(gl.TEXTURE_2D, k, v);
    this.modelFrame = texture(gl, this.modelWidth, this.modelHeight, gl.RGBA8, gl.LINEAR);
    this.outFrame = this.sameSize() ? this.modelFrame : texture(gl, this.outWidth, this.outHeight, gl.RGBA8, gl.LINEAR);
    this.classes = texture(gl, this.modelWidth, this.modelHeight, gl.RGBA8, gl.LINEAR);
    this.near = texture(gl, Math.ceil(this.modelWidth / 4), Math.ceil(this.modelHeight / 4), gl.RGBA8, gl.LINEAR);
    this.blocks = texture(gl, bw, bh, gl.RGBA16F, gl.NEAREST);
    this.blurTmp = texture(gl, bw, bh, gl.RGBA16F, gl.NEAREST);
    this.fine = texture(gl, bw, bh, gl.RGBA16F, gl.LINEAR);
    this.coarse = texture(gl, bw, bh, gl.RGBA16F, gl.LINEAR);
    this.memory = [0, 1].map(() => texture(gl, this.outWidth, this.outHeight, gl.RGBA8, gl.LINEAR));
    for (const m of this.memory) this.clear(m, [1, 1, 1, 0]);
    this.current = 0;
    this.results = 0;
    this.setCorners([[0, 0], [1, 0], [1, 1], [0, 1]]);
  }

  sameSize() { return this.outWidth === this.modelWidth && this.outHeight === this.modelHeight; }

  setCorners(corners) {
    this.corners = corners.map((c) => c.slice());
    this.homography = squareToQuad(this.corners);
  }

  clear(target, rgba) {
    const gl = this.gl;
    gl.bindFramebuffer(gl.FRAMEBUFFER, target.fb);
    gl.clearColor(...rgba);
    gl.clear(gl.COLOR_BUFFER_BIT);
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
  }

  // The latest camera frame (a <video>, ImageBitmap, image or canvas) into the frame texture.
  uploadFrame(source) {
    const gl = this.gl;
    const width = source.videoWidth || source.naturalWidth || source.width;
    const height = source.videoHeight || source.naturalHeight || source.height;
    if (!width || !height) return false;
    gl.bindBuffer(gl.PIXEL_UNPACK_BUFFER, null);
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 4);
    gl.bindTexture(gl.TEXTURE_2D, this.frame.tex);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, source);
    gl.bindTexture(gl.TEXTURE_2D, null);
    this.frame.width = width;
    this.frame.height = height;
    return true;
  }

  pass(name, target, uniforms) {
    const gl = this.gl;
    const { program, uniforms: info } = this.programs[name];
    gl.useProgram(program);
    gl.bindFramebuffer(gl.FRAMEBUFFER, target ? target.fb : null);
    const width = target ? target.width : gl.drawingBufferWidth;
    const height = target ? target.height : gl.drawingBufferHeight;
    gl.viewport(0, 0, width, height);
    gl.disable(gl.SCISSOR_TEST);
    gl.disable(gl.BLEND);
    gl.bindVertexArray(null);
    let unit = 0;
    const all = { uSize: [width, height], ...uniforms };
    for (const [key, value] of Object.entries(all)) {
      const u = info[key];
      if (!u) continue;
      if (u.type === gl.SAMPLER_2D) {
        gl.activeTexture(gl.TEXTURE0 + unit);
        gl.bindTexture(gl.TEXTURE_2D, value);
        gl.uniform1i(u.location, unit++);
      } else if (u.type === gl.INT) gl.uniform1i(u.location, value);
      else if (u.type === gl.INT_VEC2) gl.uniform2iv(u.location, value);
      else if (u.type === gl.FLOAT) gl.uniform1f(u.location, value);
      else if (u.type === gl.FLOAT_VEC2) gl.uniform2fv(u.location, value);
      else if (u.type === gl.FLOAT_VEC3) gl.uniform3fv(u.location, value);
    }
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    for (let i = unit - 1; i >= 0; i--) {
      gl.activeTexture(gl.TEXTURE0 + i);
      gl.bindTexture(gl.TEXTURE_2D, null);
    }
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.useProgram(null);
  }

  rectifyUniforms() {
    const [hx, hy, hw] = this.homography;
    return { uHx: hx, uHy: hy, uHw: hw };
  }

  // Rectify the uploaded frame into the model's input texture (and keep a copy: the plan may reuse the input
  // texture while the model runs). Call only between runs; then model.runToTexture(null).
  writeModelInput() {
    const input = this.model.inputTexture();
    const target = { fb: input.framebuffer, width: this.modelWidth, height: this.modelHeight };
    const u = { ...this.rectifyUniforms(), uFrame: this.frame.tex };
    this.pass('rectify', target, { ...u, uAlpha: 0 });
    this.pass('rectify', this.modelFrame, { ...u, uAlpha: 1 });
    if (!this.sameSize()) this.pass('rectify', this.outFrame, { ...u, uAlpha: 1 });
  }

  // One model result (the `probs` texture from runToTexture) into the board memory.
  applyResult(probs, { rate = 1 } = {}) {
    this.pass('classes', this.classes, { uProbs: probs.texture });
    this.pass('near', this.near, { uClasses: this.classes.tex });
    this.pass('gather', this.blocks, { uFrame: this.modelFrame.tex, uClasses: this.classes.tex, uNear: this.near.tex });
    for (const [out, sigma] of [[this.fine, 1.5], [this.coarse, 6]]) {
      this.pass('blur', this.blurTmp, { uSource: this.blocks.tex, uStep: [1, 0], uSigma: sigma });
      this.pass('blur', out, { uSource: this.blurTmp.tex, uStep: [0, 1], uSigma: sigma });
    }
    const previous = this.memory[this.current];
    const next = this.memory[1 - this.current];
    this.pass('enhance', next, {
      uFrame: this.outFrame.tex, uClasses: this.classes.tex, uFine: this.fine.tex, uCoarse: this.coarse.tex,
      uMemory: previous.tex, uNear: this.near.tex, uRate: this.results === 0 ? 1 : rate,
    });
    this.current = 1 - this.current;
    this.results++;
  }

  // Draw the view on the canvas (its drawing buffer size).
  draw(view = 'board') {
    if (view === 'camera') {
      this.pass('showCamera', null, { ...this.rectifyUniforms(), uFrame: this.frame.tex });
    } else if (view === 'classes') {
      this.pass('showClasses', null, { uModelFrame: this.modelFrame.tex, uClasses: this.classes.tex });
    } else {
      this.pass('showBoard', null, { uMemory: this.memory[this.current].tex });
    }
  }

  dispose() {
    const gl = this.gl;
    for (const { program } of Object.values(this.programs)) gl.deleteProgram(program);
    const targets = [this.modelFrame, this.classes, this.near, this.blocks, this.blurTmp, this.fine, this.coarse, ...this.memory];
    if (!this.sameSize()) targets.push(this.outFrame);
    for (const t of targets) { gl.deleteTexture(t.tex); gl.deleteFramebuffer(t.fb); }
    gl.deleteTexture(this.frame.tex);
  }
}
