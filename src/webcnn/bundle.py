"""bundle: model.json + weights.bin, deterministic, with sizes and sha256 for validation before GPU work."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np

from .errors import WebcnnError
from .ir import chw
from .lower.core import Storage

FORMAT, VERSION = "webcnn-bundle", 2
HASH_CHUNK_BYTES = 1 << 20   # weights.bin is verified in pieces of this size (about 1 ms each in Chromium here)
WEIGHT_ALIGN = 16


class Bundle:
    def __init__(self, manifest: dict, weights: bytes):
        self.manifest = manifest
        self.weights = weights

    @property
    def json_bytes(self) -> bytes:
        return (json.dumps(self.manifest, indent=1, sort_keys=False) + "\n").encode()

    def save(self, out_dir) -> str:
        """Write both files atomically: a failure leaves no partial bundle behind."""
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        written = []
        try:
            for name, data in (("weights.bin", self.weights), ("model.json", self.json_bytes)):
                fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out_dir)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                written.append((tmp, os.path.join(out_dir, name)))
            for tmp, final in written:
                os.replace(tmp, final)
        except OSError as e:
            for tmp, _ in written:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            raise WebcnnError(f"could not write the bundle to {out_dir}: {e}") from None
        return out_dir

    def stats(self) -> dict:
        return self.manifest["totals"]


def _tensor_entry(name, shape, view):
    c, h, w = chw(shape)
    return {"name": name, "shape": list(shape), "channels": c, "height": h, "width": w,
            "parts": [{"texture": p.texture, "slices": p.slices, "cols": p.cols, "rows": p.rows} for p in view.parts]}


def build(graph, lw, textures, pass_tiles, source_info: dict, debug_tensors=()) -> Bundle:
    weights = bytearray()
    weight_entries, weight_index = [], {}
    for w in lw.weights:
        data = np.ascontiguousarray(w.data, dtype="<f4").tobytes()
        offset = len(weights)
        weights += data
        weights += b"\0" * (-len(weights) % WEIGHT_ALIGN)
        width, height = w.size
        weight_index[id(w)] = len(weight_entries)
        weight_entries.append({"name": w.name, "width": width, "height": height, "offset": offset,
                               "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    programs, program_index, passes = [], {}, []
    total_flops = total_draws = 0
    for p, tile_list in zip(lw.passes, pass_tiles):
        if p.source not in program_index:
            program_index[p.source] = len(programs)
            name = "p" + hashlib.sha256(p.source.encode()).hexdigest()[:12]
            programs.append({"name": name, "samplers": [u for u, _ in p.samplers], "fragment": p.source})
        bindings = []
        for u, part in p.samplers:
            if isinstance(part, Storage):
                bindings.append({"sampler": u, "texture": part.texture})
            else:
                bindings.append({"sampler": u, "weight": weight_index[id(part)]})
        texels = sum(t[2] * t[3] for t in tile_list)
        flops = int(p.flops_per_texel * texels)
        total_flops += flops
        total_draws += len(tile_list)
        passes.append({"node": p.node, "op": p.op, "program": program_index[p.source], "inputs": bindings,
                       "output": p.output.texture, "flops": flops, "bytes": int(p.bytes_per_texel * texels),
                       "tileFlops": [int(p.flops_per_texel * t[2] * t[3]) for t in tile_list], "tiles": tile_list})
    texture_bytes = sum(t.bytes_fp32 for t in textures)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "source": source_info,
        "inputs": [_tensor_entry(n, graph.shape(n), lw.views[n]) for n in graph.inputs],
        "outputs": [_tensor_entry(n, graph.shape(n), lw.views[n]) for n in graph.outputs],
        "debugTensors": [_tensor_entry(n, graph.shape(n), lw.views[n]) for n in debug_tensors],
        "textures": [{"width": t.width, "height": t.height, **({"layers": t.layers} if t.layers > 1 else {})}
                     for t in textures],
        "weights": weight_entries,
        "programs": programs,
        "passes": passes,
        "totals": {"flops": total_flops, "passes": len(passes), "draws": total_draws, "programs": len(programs),
                   "textures": len(textures), "textureBytesFp32": texture_bytes, "weightBytes": len(weights)},
        "weightsFile": {"name": "weights.bin", "bytes": len(weights),
                        "sha256": hashlib.sha256(bytes(weights)).hexdigest(),
                        # the runtime checks these: a browser hashes on its main thread, so one digest of a large
                        # file would freeze the page
                        "chunkBytes": HASH_CHUNK_BYTES,
                        "chunks": [hashlib.sha256(weights[i:i + HASH_CHUNK_BYTES]).hexdigest()
                                   for i in range(0, len(weights), HASH_CHUNK_BYTES)]},
    }
    return Bundle(manifest, bytes(weights))


def load(bundle_dir) -> Bundle:
    path = os.path.join(os.fspath(bundle_dir), "model.json")
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read())
        with open(os.path.join(os.fspath(bundle_dir), "weights.bin"), "rb") as f:
            weights = f.read()
    except (OSError, ValueError) as e:
        raise WebcnnError(f"cannot read the bundle in {bundle_dir}: {e}") from None
    return Bundle(manifest, weights)
