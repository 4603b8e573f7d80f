"""The compiler's own graph: just big enough for lowering. Batch-1 float tensors with static shapes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    const: np.ndarray | None = None  # set for initializers and folded constants


@dataclass
class Node:
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)
    epilogue: list = field(default_factory=list)  # fused steps: ("act", op, attrs) or ("add", tensor)


@dataclass
class Graph:
    tensors: dict[str, Tensor]
    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    opset: int

    def add_tensor(self, name: str, shape, value: np.ndarray | None = None) -> str:
        """Declare a tensor that a rewrite introduces (a constant when `value` is given); returns its name."""
        self.tensors[name] = Tensor(name, tuple(shape), value)
        return name

    def is_const(self, name: str) -> bool:
        return name == "" or (name in self.tensors and self.tensors[name].const is not None)

    def const(self, name: str) -> np.ndarray | None:
        if name == "" or name not in self.tensors:
            return None
        return self.tensors[name].const

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def producer(self, name: str) -> Node | None:
        for n in self.nodes:
            if name in n.outputs:
                return n
        return None

    def rename_uses(self, old: str, new: str) -> None:
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
            n.epilogue = [(s[0], new) if s[0] == "add" and s[1] == old else s for s in n.epilogue]
        self.outputs = [new if o == old else o for o in self.outputs]


def chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """How a tensor of this shape sits in textures: (channels, height, width), 4 channels per texel."""
    r = len(shape)
    if r == 0:
        return (1, 1, 1)
    if r == 1:
        return (shape[0], 1, 1)
    if r == 2:
        return (shape[1], 1, 1) if shape[0] == 1 else (shape[0], 1, shape[1])
    if r == 3:
        # [1, N, k] (tokens, a detector's anchors): N along the channels, so all four lanes are used and N may
        # exceed a texture's size; [C, H, W] as it is
        return (shape[1], 1, shape[2]) if shape[0] == 1 else tuple(shape)
    return (int(np.prod(shape[:-2])), shape[-2], shape[-1])


def chw_groups(shape: tuple[int, ...]) -> tuple[list[int], list[int], list[int]]:
    """Which original axes fold into the channel, height and width of chw(shape)."""
    r = len(shape)
    if r == 0:
        return [], [], []
    if r == 1:
        return [0], [], []
    if r == 2:
        return ([0, 1], [], []) if shape[0] == 1 else ([0], [], [1])
    if r == 3:
        return ([0, 1], [], [2]) if shape[0] == 1 else ([0], [1], [2])
    return list(range(r - 2)), [r - 2], [r - 1]
