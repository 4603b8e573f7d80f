// Tensors on the CPU are NCHW Float32Arrays; on the GPU, 4 channels per RGBA texel, slices in a cols x rows grid.

export function packTensor(t, data) {
  const part = t.parts[0];
  const { channels: C, height: H, width: W } = t;
  const rowTexels = part.cols * W;
  const out = new Float32Array(rowTexels * part.rows * H * 4);
  for (let c = 0; c < C; c++) {
    const s = c >> 2;
    const lane = c & 3;
    const x0 = (s % part.cols) * W;
    const y0 = Math.floor(s / part.cols) * H;
    for (let y = 0; y < H; y++) {
      let src = (c * H + y) * W;
      let dst = ((y0 + y) * rowTexels + x0) * 4 + lane;
      for (let x = 0; x < W; x++, dst += 4) out[dst] = data[src++];
    }
  }
  return out;
}

export function unpackTensor(t, chunks) {
  const { channels: C, height: H, width: W } = t;
  const out = new Float32Array(C * H * W);
  let base = 0;
  for (const { part, texels } of chunks) {
    const rowTexels = part.cols * W;
    const partChannels = Math.min(part.slices * 4, C - base);
    for (let c = 0; c < partChannels; c++) {
      const s = c >> 2;
      const lane = c & 3;
      const x0 = (s % part.cols) * W;
      const y0 = Math.floor(s / part.cols) * H;
      for (let y = 0; y < H; y++) {
        let dst = ((base + c) * H + y) * W;
        let src = ((y0 + y) * rowTexels + x0) * 4 + lane;
        for (let x = 0; x < W; x++, src += 4) out[dst++] = texels[src];
      }
    }
    base += part.slices * 4;
  }
  return out;
}
