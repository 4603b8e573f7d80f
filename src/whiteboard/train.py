"""
Train the whiteboard segmentation model on synthetic frames generated on the fly.

Examples:
  # short CPU smoke run (a few minutes on 2 cores)
  PYTHONPATH=src python -m whiteboard.train --device=cpu --max_steps=150 --batch_size=4 --num_workers=2 --val_count=16 --out_dir=/tmp/wb_cpu
  # the runs behind the shipped model (lent H100, 15 processes generate data), each continuing the one before:
  # 1) from the previous shipped model, on the richer generator (8.7 min)
  PYTHONPATH=src python -m whiteboard.train --device=cuda --max_minutes=8.7 --batch_size=32 --num_workers=15 --reuse=4 --init_from=src/whiteboard/assets/whiteboard.onnx --lr=2e-3 --warmup_steps=100 --eval_interval=500 --out_dir=$OUT
  # 2) and 3) continued from the last checkpoint (8.5 min each; run 3: --lr=5e-4 --min_lr=1e-5 --crop_phase=0.2)
  PYTHONPATH=src python -m whiteboard.train --device=cuda --max_minutes=8.5 --batch_size=32 --num_workers=15 --reuse=8 --init_from=out/wb_run1/ckpt.pt --lr=1e-3 --min_lr=2e-5 --warmup_steps=50 --crop_phase=0.3 --class_weights="(1.0, 1.2, 1.5)" --eval_interval=500 --out_dir=$OUT
  #    (runs 1-3 had --decoder_blocks="(1, 1)")
  # 4) grown model: one more residual block at 1/4 and at 1/2, identity-initialised from run 3 (8.2 min): shipped
  PYTHONPATH=src python -m whiteboard.train --device=cuda --max_minutes=8.2 --batch_size=32 --num_workers=15 --reuse=8 --init_from=out/wb_run3/ckpt.pt --decoder_blocks="(2, 2)" --lr=1e-3 --min_lr=1e-5 --warmup_steps=50 --crop_phase=0.2 --class_weights="(1.0, 1.2, 1.5)" --eval_interval=500 --out_dir=$OUT
  # 5) continued from run 4 (8.2 min): test ink F1 +0.001, but more shirt labelled ink on the real photos, so not shipped
  PYTHONPATH=src python -m whiteboard.train --device=cuda --max_minutes=8.2 --batch_size=32 --num_workers=15 --reuse=8 --init_from=out/wb_run4/ckpt.pt --decoder_blocks="(2, 2)" --lr=4e-4 --min_lr=5e-6 --warmup_steps=50 --crop_phase=0.1 --class_weights="(1.0, 1.2, 1.5)" --eval_interval=500 --run_seed=3 --out_dir=$OUT
  # Runs 6-11 (not shipped): EMA weights, then a full-resolution refine block paid for by narrowing the full-res
  # branch 12 -> 10 (1.492 GFLOPs), then sibling runs averaged. Test ink F1 0.926 (6), 0.929 (8), 0.9295 (soup of
  # 9-11, chosen on validation seeds), but more of the presenter's shirt labelled ink on the real photographs.
  # 6) --init_from=out/wb_run4/ckpt.pt --lr=5e-4 --min_lr=5e-6 --crop_phase=0.1 --ema_decay=0.999 --run_seed=4
  # 7) --init_from=out/wb_run6/ckpt.pt --full_res_width=10 --head_width=24 --refine=True --lr=1e-3 --min_lr=1e-5 --warmup_steps=100 --crop_phase=0.2 --ema_decay=0.999 --run_seed=5
  # 8) as 7) from out/wb_run7/ckpt.pt with --lr=5e-4 --min_lr=5e-6 --crop_phase=0.1 --run_seed=6
  # 9-11) as 7) from out/wb_run8/ckpt.pt with --lr=3e-4 --min_lr=3e-6 --crop_phase=0.0 --run_seed=7, 8, 9
  #    (all with --max_minutes=8.2 --batch_size=32 --num_workers=15 --reuse=8 --decoder_blocks="(2, 2)" --class_weights="(1.0, 1.2, 1.5)")
  PYTHONPATH=src python -m whiteboard.train --soup_from=out/wb_run9/ckpt.pt,out/wb_run10/ckpt.pt,out/wb_run11/ckpt.pt --out_dir=out/wb_soup
  # Runs 12-17 (issue 4): the generator dresses 30% of presenters in a fine-weave shirt (synth.weave_shirt: grey, thin
  # dark creases, thread texture; drawn from a side generator, so all labels and every other pixel of a frame,
  # test frames included, are as before), the cue behind the real presenter's shirt being labelled ink.
  # 12) and 13) from the soup of 9-11, --run_seed=12 and 13 (8.0 min each):
  PYTHONPATH=src python -m whiteboard.train --device=cuda --max_minutes=8.0 --batch_size=32 --num_workers=15 --reuse=8 --init_from=out/wb_soup/ckpt.pt --decoder_blocks="(2, 2)" --full_res_width=10 --head_width=24 --refine=True --lr=3e-4 --min_lr=3e-6 --warmup_steps=50 --crop_phase=0.0 --class_weights="(1.0, 1.2, 1.5)" --eval_interval=500 --ema_decay=0.999 --run_seed=12 --out_dir=$OUT
  # 14) as 12) from out/wb_run12/ckpt.pt with --lr=1.5e-4 --min_lr=1.5e-6 --run_seed=14
  # 15-17) as 12) from out/wb_run14/ckpt.pt with --lr=1e-4 --min_lr=1e-6 --shirt_weave_p=0.6 --run_seed=15, 16, 17
  #    (--shirt_weave_p: training frames only; validation and test frames keep synth.SHIRT_WEAVE_P = 0.3)
  PYTHONPATH=src python -m whiteboard.train --soup_from=out/wb_run15/ckpt.pt,out/wb_run16/ckpt.pt,out/wb_run17/ckpt.pt --out_dir=out/wb_soup151617
  # export a checkpoint to ONNX + JSON (config only; evaluate adds the metrics)
  PYTHONPATH=src python -m whiteboard.train --export_from=/tmp/wb_cpu/ckpt.pt --export_dir=src/whiteboard/assets

Any config global below can be overridden as --name=value.
"""
from __future__ import annotations

import ast
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from whiteboard import model as wb_model
from whiteboard import synth

# ----------------------------------------------------------------------------- config
out_dir = "/tmp/wb_run"           # checkpoint, curves and exported model go here
device = "auto"                   # auto | cpu | cuda
max_steps = 20000                 # optimisation steps (whichever of steps / minutes ends first)
max_minutes = 0.0                 # wall-clock budget for training; 0 = no limit
batch_size = 16                   # frames per step
num_workers = 2                   # DataLoader processes running the generator
reuse = 1                         # steps per generated batch (random crop/flip each time) when data is the bottleneck
frame_h, frame_w = 360, 640       # generated frame size (the model's export size)
crop_h, crop_w = 256, 448         # training crop during the first phase (multiples of 8)
crop_phase = 0.5                  # fraction of training done on crops, the rest on full frames
lr = 4e-3                         # peak AdamW learning rate
min_lr = 1e-4                     # cosine floor
weight_decay = 1e-4               # AdamW weight decay
warmup_steps = 200                # linear warm-up
class_weights = (1.0, 1.5, 1.5)   # cross-entropy weights for board, ink, foreground (ink is thin and rare)
dice_weight = 0.5                 # weight of the soft dice loss on ink and foreground
ema_decay = 0.0                   # if > 0: validate, checkpoint and export an exponential moving average of the weights
val_count = 64                    # validation frames (seeds from synth.VAL_SEEDS)
eval_interval = 250               # steps between validations and checkpoints
run_seed = 0                      # shifts the training seed stream
widths = (16, 32, 80)             # model: channels at 1/2, 1/4, 1/8
full_res_width = 12               # model: channels of the full-resolution branch
dilations = (1, 2, 4, 8, 16)      # model: dilations of the 1/8 residual blocks
decoder_blocks = (2, 2)           # model: residual blocks after the merge at 1/4 and 1/2
head_width = 0                    # model: channels of the full-resolution decoder block (0: 2 x full_res_width)
refine = False                    # model: residual full-resolution 3x3 block over logits and full-res features
shirt_weave_p = -1.0              # training frames only: share of presenters in fine-weave shirts (< 0: synth.SHIRT_WEAVE_P)
init_from = ""                    # start from these weights: a checkpoint (.pt) or a shipped model (.onnx, BatchNorm folded)
export_from = ""                  # if set: export this checkpoint and exit
soup_from = ""                    # if set: comma-separated checkpoints of one config; their averaged weights -> out_dir/ckpt.pt
export_dir = "src/whiteboard/assets"  # where --export_from writes whiteboard.onnx/.json
# -----------------------------------------------------------------------------
CONFIG_KEYS = [k for k, v in list(globals().items()) if not k.startswith("_") and isinstance(v, (int, float, str, tuple, bool))
               and k not in ("annotations", "CONFIG_KEYS")]


def apply_overrides(argv):
    """nanoGPT-style --key=value overrides of the globals above."""
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise SystemExit(f"expected --key=value, got {arg!r}")
        key, value = arg[2:].split("=", 1)
        if key not in CONFIG_KEYS:
            raise SystemExit(f"unknown config key {key!r}; known: {', '.join(CONFIG_KEYS)}")
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed = value
        default = globals()[key]
        if isinstance(default, float) and isinstance(parsed, int):
            parsed = float(parsed)
        if type(parsed) is not type(default):
            raise SystemExit(f"--{key}: expected {type(default).__name__}, got {value!r}")
        globals()[key] = parsed


class SyntheticFrames(torch.utils.data.IterableDataset):
    """An endless stream of generated frames; worker k takes seeds start+k, start+k+n, ..."""

    def __init__(self, start_seed, h, w, weave_p=-1.0):
        self.start_seed, self.h, self.w, self.weave_p = start_seed, h, w, weave_p

    def __iter__(self):
        import cv2
        cv2.setNumThreads(1)  # the workers already use every core
        if self.weave_p >= 0:  # the workers import synth afresh (spawn): set it here
            synth.SHIRT_WEAVE_P = self.weave_p
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        seed = self.start_seed + worker
        while True:
            s = synth.generate(seed, self.h, self.w)
            yield torch.from_numpy(s.image).permute(2, 0, 1), torch.from_numpy(s.label.astype(np.int64))
            seed += n_workers


def random_crop_flip(images, labels, ch, cw):
    """One random crop (same for the batch, keeps it a dense tensor) and a random horizontal flip."""
    _, _, h, w = images.shape
    if ch < h or cw < w:
        y = int(torch.randint(0, h - ch + 1, ()))
        x = int(torch.randint(0, w - cw + 1, ()))
        images, labels = images[:, :, y:y + ch, x:x + cw], labels[:, y:y + ch, x:x + cw]
    if torch.rand(()) < 0.5:
        images, labels = images.flip(-1), labels.flip(-1)
    return images, labels


def loss_fn(logits, labels, weights):
    ce = F.cross_entropy(logits, labels, weight=weights)
    probs = logits.float().softmax(1)
    dice = 0.0
    for c in (synth.CLASS_INK, synth.CLASS_FOREGROUND):
        p, t = probs[:, c], (labels == c).float()
        dice = dice + 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    return ce + dice_weight * dice / 2, ce


def confusion(pred, label, n=3):
    """3x3 confusion counts (rows: truth, cols: prediction)."""
    idx = label.reshape(-1).astype(np.int64) * n + pred.reshape(-1).astype(np.int64)
    return np.bincount(idx, minlength=n * n).reshape(n, n)


def summary_from_confusion(cm):
    ink, fg = synth.CLASS_INK, synth.CLASS_FOREGROUND
    tp = cm[ink, ink]
    fp = cm[:, ink].sum() - tp
    fn = cm[ink, :].sum() - tp
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    iou = tp / max(tp + fp + fn, 1)
    tpf = cm[fg, fg]
    fg_iou = tpf / max(cm[:, fg].sum() + cm[fg, :].sum() - tpf, 1)
    return {"ink_f1": float(f1), "ink_iou": float(iou), "fg_iou": float(fg_iou)}


@torch.no_grad()
def validate(net, val_images, val_labels, dev):
    net.eval()
    cm = np.zeros((3, 3), np.int64)
    for i in range(0, len(val_images), 8):
        x = val_images[i:i + 8].to(dev).float() / 255
        pred = net(x).argmax(1).cpu().numpy()
        cm += confusion(pred, val_labels[i:i + 8].numpy())
    net.train()
    return summary_from_confusion(cm)


def save_curves(history, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [h["step"] for h in history["train"]]
    ax0.plot(steps, [h["loss"] for h in history["train"]], label="train loss (smoothed)")
    ax0.set_yscale("log"); ax0.set_xlabel("step"); ax0.legend(); ax0.grid(alpha=0.3)
    vsteps = [h["step"] for h in history["val"]]
    for key in ("ink_f1", "ink_iou", "fg_iou"):
        ax1.plot(vsteps, [h[key] for h in history["val"]], marker=".", label=f"val {key}")
    ax1.set_xlabel("step"); ax1.set_ylim(0, 1); ax1.legend(); ax1.grid(alpha=0.3)
    fig.suptitle("whiteboard segmentation training (synthetic validation set)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@torch.no_grad()
def load_folded_onnx(net, path, calibration):
    """Warm start from an exported model whose BatchNorms were folded into its Convs.

    The k-th ONNX Conv is the k-th nn.Conv2d (both follow the forward order). A folded Conv carries a bias that
    the BatchNorm after it must reproduce: in training mode a BatchNorm normalises by batch statistics, so each
    one is set, on a calibration batch, to undo exactly that normalisation and add the bias.
    """
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(path)
    values = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    modules = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    if len(convs) != len(modules):
        raise SystemExit(f"--init_from={path}: {len(convs)} Convs there, {len(modules)} in this model config")
    folded_bias = {}
    for node, conv in zip(convs, modules):
        weight = torch.from_numpy(values[node.input[1]].copy())
        if weight.shape != conv.weight.shape:
            raise SystemExit(f"--init_from={path}: Conv {node.name} has shape {tuple(weight.shape)}, expected {tuple(conv.weight.shape)}")
        conv.weight.copy_(weight)
        bias = torch.from_numpy(values[node.input[2]].copy()) if len(node.input) > 2 else torch.zeros(weight.shape[0])
        if conv.bias is not None:
            conv.bias.copy_(bias)
        else:
            folded_bias[conv] = bias
    # the BatchNorm that follows each bias-free Conv (modules are registered in forward order)
    pending, hooks = None, []
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            pending = m if m in folded_bias else None
        elif isinstance(m, torch.nn.BatchNorm2d) and pending is not None:
            def calibrate(bn, inputs, bias=folded_bias[pending]):
                x = inputs[0]
                mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
                bn.weight.copy_(torch.sqrt(var + bn.eps))
                bn.bias.copy_(mean + bias.to(x.device))
                bn.running_mean.copy_(mean)
                bn.running_var.copy_(var)
            hooks.append(m.register_forward_pre_hook(calibrate))
            pending = None
    net.train()
    net(calibration)
    for hook in hooks:
        hook.remove()


@torch.no_grad()
def narrow_full_res(net, state):
    """A checkpoint with a wider full-resolution branch than the model: keep its most important channels (by
    |BatchNorm scale| x the weight the decoder puts on them), to pay in FLOPs for a new full-resolution block."""
    width = net.full[0].out_channels
    old = state["full.0.weight"].shape[0]
    if old == width:
        return state
    if old < width:
        raise SystemExit(f"--init_from: the checkpoint's full-resolution branch has {old} channels, fewer than {width}")
    skip = state["dec0.depthwise.0.weight"].shape[0] - old   # dec0 reads cat([up(d1), f0])
    use = state["full.1.weight"].abs() * state["dec0.pointwise.0.weight"][:, skip:].flatten(1).norm(dim=0)
    keep = use.argsort(descending=True)[:width].sort().values
    state = dict(state)
    for k in ("full.0.weight", "full.1.weight", "full.1.bias", "full.1.running_mean", "full.1.running_var"):
        state[k] = state[k][keep]
    dec_keep = torch.cat([torch.arange(skip, device=keep.device), skip + keep])
    for k in ("dec0.depthwise.0.weight", "dec0.depthwise.1.weight", "dec0.depthwise.1.bias",
              "dec0.depthwise.1.running_mean", "dec0.depthwise.1.running_var"):
        state[k] = state[k][dec_keep]
    state["dec0.pointwise.0.weight"] = state["dec0.pointwise.0.weight"][:, dec_keep]
    print(f"narrowed the full-resolution branch {old} -> {width} channels (kept {keep.tolist()})")
    return state


@torch.no_grad()
def grow_from(net, state):
    """Load a checkpoint into a model that may have more residual blocks than the checkpoint's.

    A block the checkpoint lacks starts as the identity: its last BatchNorm scale is zero, so the residual branch
    adds nothing and the grown model computes exactly what the checkpoint did, then learns to use the new block.
    """
    state = narrow_full_res(net, state)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected:
        raise SystemExit(f"--init_from: checkpoint has weights this model config lacks: {unexpected[:4]}")
    new_blocks = sorted({k.rsplit(".pointwise.", 1)[0] for k in missing if ".pointwise." in k})
    if any(k.startswith("refine_") for k in missing):
        print("grown from checkpoint: refine block added (zero-initialised, so the identity)")
    for name in new_blocks:
        block = net.get_submodule(name)
        if not getattr(block, "residual", False):
            raise SystemExit(f"--init_from: {name} is missing from the checkpoint and is not a residual block")
        block.pointwise[1].weight.zero_()
    if new_blocks:
        print(f"grown from checkpoint: identity-initialised {', '.join(new_blocks)}")


def soup(paths, target_dir):
    """Average the weights (and BatchNorm statistics) of sibling runs: runs continued from one checkpoint with
    different data seeds land in one basin, and their mean generalises a little better than any of them."""
    ckpts = [torch.load(p, map_location="cpu", weights_only=False) for p in paths]
    if any(c["model_config"] != ckpts[0]["model_config"] for c in ckpts):
        raise SystemExit("--soup_from: the checkpoints have different model configs")
    merged = dict(ckpts[0])
    merged["model"] = {k: sum(c["model"][k] for c in ckpts) / len(ckpts) if v.dtype.is_floating_point else v
                       for k, v in ckpts[0]["model"].items()}
    merged["config"] = {**ckpts[0]["config"], "soup_from": ",".join(paths)}
    merged["metrics"] = {}
    os.makedirs(target_dir, exist_ok=True)
    torch.save(merged, os.path.join(target_dir, "ckpt.pt"))
    print(f"averaged {len(ckpts)} checkpoints into {os.path.join(target_dir, 'ckpt.pt')}")


def current_config():
    return {k: globals()[k] for k in CONFIG_KEYS}


def export(checkpoint_path, target_dir):
    """Checkpoint -> whiteboard.onnx + whiteboard.json (model config and training config)."""
    import onnxruntime as ort

    ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    net = wb_model.build(ckpt["model_config"])
    net.load_state_dict(ckpt["model"])
    net.eval()
    os.makedirs(target_dir, exist_ok=True)
    onnx_path = os.path.join(target_dir, "whiteboard.onnx")
    ops = wb_model.export_onnx(net, onnx_path)
    x = torch.rand(wb_model.INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = wb_model.ExportWrapper(net)(x).numpy()
    got = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    json_path = os.path.join(target_dir, "whiteboard.json")
    info = json.load(open(json_path)) if os.path.exists(json_path) else {}
    info.update({
        "input": {"name": "image", "shape": list(wb_model.INPUT_SHAPE), "layout": "NCHW RGB float32 in [0,1]"},
        "output": {"name": "probs", "shape": [1, 3, *wb_model.INPUT_SHAPE[2:]], "classes": list(synth.CLASS_NAMES)},
        "opset": 17,
        "onnx_ops": ops,
        "model_config": ckpt["model_config"],
        "params": wb_model.count_params(net),
        "flops": wb_model.count_flops(net),
        "train_config": ckpt["config"],
        "train_steps": ckpt["step"],
        "val_metrics": ckpt["metrics"],
        "onnxruntime_max_abs_diff": float(np.abs(ref - got).max()),
        "onnx_bytes": os.path.getsize(onnx_path),
    })
    with open(json_path, "w") as f:
        json.dump(info, f, indent=2)
    print(f"exported {onnx_path} ({info['onnx_bytes']} bytes, ops {ops}), onnxruntime max |diff| {info['onnxruntime_max_abs_diff']:.2e}")


def main(argv=None):
    apply_overrides(sys.argv[1:] if argv is None else argv)
    if export_from:
        export(export_from, export_dir)
        return
    if soup_from:
        soup(soup_from.split(","), out_dir)
        return
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    torch.manual_seed(run_seed)
    os.makedirs(out_dir, exist_ok=True)
    model_cfg = {"widths": list(widths), "full_res_width": full_res_width, "dilations": list(dilations),
                 "decoder_blocks": list(decoder_blocks), "head_width": head_width, "refine": refine, "n_classes": 3}
    net = wb_model.build(model_cfg).to(dev)
    print(f"model: {wb_model.count_params(net):,} params, {wb_model.count_flops(net.cpu()) / 1e9:.3f} GFLOPs at {wb_model.INPUT_SHAPE}")
    net.to(dev)
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True

    print(f"generating {val_count} validation frames ...")
    val = [synth.generate(synth.VAL_SEEDS[i], frame_h, frame_w) for i in range(val_count)]
    val_images = torch.from_numpy(np.stack([s.image for s in val])).permute(0, 3, 1, 2).contiguous()
    val_labels = torch.from_numpy(np.stack([s.label for s in val]).astype(np.int64))
    if init_from.endswith(".onnx"):
        # calibrate on validation frames only: they never enter training and the weights are not fitted to them
        load_folded_onnx(net, init_from, val_images[:16].to(dev).float() / 255)
    elif init_from:
        previous = torch.load(init_from, map_location=dev, weights_only=False)
        grow_from(net, previous["model"])
    if init_from:
        print(f"initialised from {init_from}: val {validate(net, val_images, val_labels, dev)}")

    dataset = SyntheticFrames(synth.TRAIN_SEED_START + run_seed * 100_000_000, frame_h, frame_w, shirt_weave_p)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                         pin_memory=dev.type == "cuda", persistent_workers=num_workers > 0,
                                         prefetch_factor=4 if num_workers > 0 else None,
                                         # fork after OpenCV has started its thread pool can deadlock the workers
                                         multiprocessing_context="spawn" if num_workers > 0 else None)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    weights = torch.tensor(class_weights, device=dev)
    use_amp = dev.type == "cuda"

    history = {"train": [], "val": []}
    step_offset = 0  # a continued run logs its steps after those of the run it continues, for one set of curves
    if init_from.endswith(".pt"):
        history, step_offset = previous["history"], previous["step"]
    smoothed = None
    metrics = {}
    t_start = time.time()
    budget_s = max_minutes * 60 if max_minutes > 0 else math.inf
    step = 0
    pbar = tqdm(total=max_steps, dynamic_ncols=True)
    batches = iter(loader)
    n_frames = 0
    wait_s = 0.0  # time spent waiting for the generator: tells whether data or the GPU limits speed

    # The average of the weights over the last ~1/(1-decay) steps: smoother than the last step's, and what ships.
    ema_net = None
    if ema_decay > 0:
        ema_net = wb_model.build(model_cfg).to(dev)
        ema_net.load_state_dict(net.state_dict())
        if dev.type == "cuda":
            ema_net = ema_net.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def update_ema():
        for avg, cur in zip(ema_net.state_dict().values(), net.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.lerp_(cur, 1 - ema_decay)
            else:
                avg.copy_(cur)

    def save_checkpoint():
        raw = (ema_net or net).state_dict()
        ckpt = {"model": {k: v.detach().cpu() for k, v in raw.items()}, "model_config": model_cfg, "config": current_config(),
                "step": step + step_offset, "metrics": metrics, "history": history, "frames_seen": n_frames}
        torch.save(ckpt, os.path.join(out_dir, "ckpt.pt"))
        save_curves(history, os.path.join(out_dir, "training_curves.png"))

    while True:
        progress = max(step / max_steps, (time.time() - t_start) / budget_s)
        if progress >= 1:
            break
        t_wait = time.time()
        images_u8, labels = next(batches)
        wait_s += time.time() - t_wait
        n_frames += len(images_u8)
        images_u8, labels = images_u8.to(dev, non_blocking=True), labels.to(dev, non_blocking=True)
        for _ in range(reuse):
            progress = max(step / max_steps, (time.time() - t_start) / budget_s)
            if progress >= 1:
                break
            # cosine schedule over whichever budget (steps or minutes) runs out first
            lr_now = lr * min(1.0, (step + 1) / warmup_steps)
            lr_now = min_lr + (lr_now - min_lr) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
            for group in optimizer.param_groups:
                group["lr"] = lr_now
            ch, cw = (crop_h, crop_w) if progress < crop_phase else (frame_h, frame_w)
            x, y = random_crop_flip(images_u8, labels, ch, cw)
            x = x.float() / 255
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = net(x)
            loss, ce = loss_fn(logits.float(), y, weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            if ema_net is not None:
                update_ema()
            step += 1
            loss_value = loss.item() if step % 10 == 0 or step < 10 else None
            if loss_value is not None:
                smoothed = loss_value if smoothed is None else 0.9 * smoothed + 0.1 * loss_value
                history["train"].append({"step": step + step_offset, "loss": smoothed, "lr": lr_now, "time_s": time.time() - t_start})
                pbar.set_postfix(loss=f"{smoothed:.4f}", lr=f"{lr_now:.1e}", frames=n_frames,
                                 data_wait=f"{wait_s / max(time.time() - t_start, 1e-6):.0%}")
            pbar.update(1)
            if step % eval_interval == 0:
                metrics = validate(ema_net or net, val_images, val_labels, dev)
                history["val"].append({"step": step + step_offset, **metrics})
                tqdm.write(f"step {step}: val {metrics}  ({n_frames} frames, {time.time() - t_start:.0f}s)")
                save_checkpoint()
    pbar.close()
    metrics = validate(ema_net or net, val_images, val_labels, dev)
    history["val"].append({"step": step + step_offset, **metrics})
    print(f"done: {step} steps, {n_frames} generated frames, {time.time() - t_start:.0f}s "
          f"({wait_s:.0f}s waiting for data), val {metrics}")
    save_checkpoint()
    # persistent spawn-context DataLoader workers can hang interpreter shutdown for a minute; all is saved
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
