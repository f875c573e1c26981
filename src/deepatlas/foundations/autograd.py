"""Reverse-mode automatic differentiation on numpy (map place F1).

A `Tensor` holds a value, its gradient, the tensors it was computed from (`parents`) and a
closure that pushes its gradient to them. `backward()` orders the graph topologically and runs
the closures from the output back: the chain rule (Rumelhart, Hinton & Williams 1986),

    ∂L/∂x = Σ_{y ∈ children(x)} (∂y/∂x)ᵀ ∂L/∂y.

Broadcasting: if x of shape (3, 1) was broadcast to (5, 3, 4) in the forward pass, its gradient
is the upstream gradient summed over the broadcast axes (`unbroadcast`).

`gradient_check` compares the analytic gradient with central finite differences,
∂f/∂x_i ≈ (f(x + h e_i) − f(x − h e_i)) / 2h, whose error is O(h²).
"""
from __future__ import annotations

from math import pi, sqrt
from typing import Callable, Sequence

import numpy as np
from scipy.special import erf

ArrayLike = np.ndarray | float | int | Sequence


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum `grad` down to `shape`: the adjoint of numpy broadcasting."""
    # leading axes that broadcasting added
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    # axes of size 1 that broadcasting stretched
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


class Tensor:
    """A numpy array that records how it was computed, so gradients can flow back through it."""

    def __init__(self, value: ArrayLike, requires_grad: bool = False,
                 parents: tuple["Tensor", ...] = (), backward: Callable[[np.ndarray], None] | None = None,
                 op: str = "") -> None:
        self.value = np.asarray(value, dtype=np.float64)
        self.grad: np.ndarray | None = None
        self.requires_grad = requires_grad or any(p.requires_grad for p in parents)
        self.parents = parents
        self._backward = backward
        self.op = op

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def ndim(self) -> int:
        return self.value.ndim

    def __repr__(self) -> str:
        return f"Tensor(shape={self.shape}, op={self.op or 'leaf'}, requires_grad={self.requires_grad})"

    def numpy(self) -> np.ndarray:
        return self.value

    def _accumulate(self, grad: np.ndarray) -> None:
        if not self.requires_grad:
            return
        grad = unbroadcast(grad, self.shape)
        self.grad = grad.copy() if self.grad is None else self.grad + grad

    def zero_grad(self) -> None:
        self.grad = None

    def backward(self, grad: ArrayLike | None = None) -> None:
        """Fill `.grad` of every tensor this one depends on with ∂self/∂tensor (times `grad`)."""
        if grad is None:
            if self.value.size != 1:
                raise ValueError(f"backward() without a grad needs a scalar output, got shape {self.shape}")
            grad = np.ones_like(self.value)
        # topological order: every tensor appears after all tensors it was computed from
        order: list[Tensor] = []
        seen: set[int] = set()
        stack: list[tuple[Tensor, bool]] = [(self, False)]
        while stack:  # iterative DFS (deep graphs would overflow Python's recursion limit)
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node.parents if id(p) not in seen)
        # intermediate gradients are reset so a second backward() does not double-count them
        for node in order:
            if node.parents:
                node.grad = None
        self.grad = np.asarray(grad, dtype=np.float64) * np.ones_like(self.value)
        for node in reversed(order):
            if node._backward is not None and node.grad is not None:
                node._backward(node.grad)

    # -- elementwise arithmetic -------------------------------------------------------------
    def __add__(self, other: "Tensor | ArrayLike") -> "Tensor":
        o = as_tensor(other)

        def back(g: np.ndarray) -> None:           # ∂(a+b)/∂a = 1, ∂(a+b)/∂b = 1
            self._accumulate(g)
            o._accumulate(g)
        return Tensor(self.value + o.value, parents=(self, o), backward=back, op="add")

    __radd__ = __add__

    def __neg__(self) -> "Tensor":
        return Tensor(-self.value, parents=(self,), backward=lambda g: self._accumulate(-g), op="neg")

    def __sub__(self, other: "Tensor | ArrayLike") -> "Tensor":
        o = as_tensor(other)

        def back(g: np.ndarray) -> None:           # ∂(a−b)/∂a = 1, ∂(a−b)/∂b = −1
            self._accumulate(g)
            o._accumulate(-g)
        return Tensor(self.value - o.value, parents=(self, o), backward=back, op="sub")

    def __rsub__(self, other: ArrayLike) -> "Tensor":
        return as_tensor(other) - self

    def __mul__(self, other: "Tensor | ArrayLike") -> "Tensor":
        o = as_tensor(other)

        def back(g: np.ndarray) -> None:           # ∂(ab)/∂a = b, ∂(ab)/∂b = a
            self._accumulate(g * o.value)
            o._accumulate(g * self.value)
        return Tensor(self.value * o.value, parents=(self, o), backward=back, op="mul")

    __rmul__ = __mul__

    def __truediv__(self, other: "Tensor | ArrayLike") -> "Tensor":
        o = as_tensor(other)

        def back(g: np.ndarray) -> None:           # ∂(a/b)/∂a = 1/b, ∂(a/b)/∂b = −a/b²
            self._accumulate(g / o.value)
            o._accumulate(-g * self.value / o.value ** 2)
        return Tensor(self.value / o.value, parents=(self, o), backward=back, op="div")

    def __rtruediv__(self, other: ArrayLike) -> "Tensor":
        return as_tensor(other) / self

    def __pow__(self, exponent: float) -> "Tensor":
        if isinstance(exponent, Tensor):
            raise TypeError("Tensor ** Tensor is not supported; use exp(b * log(a))")
        k = float(exponent)
        # d(x^k)/dx = k x^(k−1)
        return Tensor(self.value ** k, parents=(self,), op="pow",
                      backward=lambda g: self._accumulate(g * k * self.value ** (k - 1)))

    def __matmul__(self, other: "Tensor") -> "Tensor":
        o = as_tensor(other)
        if self.ndim < 2 or o.ndim < 2:
            raise ValueError(f"matmul needs ≥2-D operands, got shapes {self.shape} and {o.shape}")

        def back(g: np.ndarray) -> None:           # C = AB: ∂L/∂A = G Bᵀ, ∂L/∂B = Aᵀ G
            self._accumulate(g @ np.swapaxes(o.value, -1, -2))
            o._accumulate(np.swapaxes(self.value, -1, -2) @ g)
        return Tensor(self.value @ o.value, parents=(self, o), backward=back, op="matmul")

    # -- elementwise functions --------------------------------------------------------------
    def exp(self) -> "Tensor":
        y = np.exp(self.value)                     # d eˣ/dx = eˣ
        return Tensor(y, parents=(self,), backward=lambda g: self._accumulate(g * y), op="exp")

    def log(self) -> "Tensor":                     # d log x/dx = 1/x
        return Tensor(np.log(self.value), parents=(self,), op="log",
                      backward=lambda g: self._accumulate(g / self.value))

    def relu(self) -> "Tensor":                    # d relu/dx = 1[x > 0]  (0 at x = 0, like torch)
        return Tensor(np.maximum(self.value, 0.0), parents=(self,), op="relu",
                      backward=lambda g: self._accumulate(g * (self.value > 0)))

    def sigmoid(self) -> "Tensor":
        # σ(x) = 1/(1+e^{−x}), written per sign so e^{±x} never overflows;  σ' = σ(1 − σ)
        x = self.value
        e = np.exp(-np.abs(x))
        y = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return Tensor(y, parents=(self,), op="sigmoid", backward=lambda g: self._accumulate(g * y * (1 - y)))

    def tanh(self) -> "Tensor":
        y = np.tanh(self.value)                    # tanh' = 1 − tanh²
        return Tensor(y, parents=(self,), op="tanh", backward=lambda g: self._accumulate(g * (1 - y * y)))

    def gelu(self) -> "Tensor":
        # Hendrycks & Gimpel 2016: GELU(x) = x Φ(x);  d/dx = Φ(x) + x φ(x)
        x = self.value
        cdf = 0.5 * (1.0 + erf(x / sqrt(2.0)))
        pdf = np.exp(-0.5 * x * x) / sqrt(2.0 * pi)
        return Tensor(x * cdf, parents=(self,), op="gelu", backward=lambda g: self._accumulate(g * (cdf + x * pdf)))

    # -- reductions and shapes --------------------------------------------------------------
    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> "Tensor":
        def back(g: np.ndarray) -> None:           # every summed element receives the same gradient
            if axis is not None and not keepdims:
                g = np.expand_dims(g, axis)
            self._accumulate(np.broadcast_to(g, self.shape))
        return Tensor(self.value.sum(axis=axis, keepdims=keepdims), parents=(self,), backward=back, op="sum")

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> "Tensor":
        n = self.value.size if axis is None else int(np.prod([self.shape[a] for a in np.atleast_1d(axis)]))
        return self.sum(axis, keepdims) / n

    def reshape(self, *shape: int) -> "Tensor":
        return Tensor(self.value.reshape(*shape), parents=(self,), op="reshape",
                      backward=lambda g: self._accumulate(g.reshape(self.shape)))

    def transpose(self, *axes: int) -> "Tensor":
        axes_ = axes or tuple(reversed(range(self.ndim)))
        inverse = np.argsort(axes_)                # the permutation that undoes `axes_`
        return Tensor(self.value.transpose(axes_), parents=(self,), op="transpose",
                      backward=lambda g: self._accumulate(g.transpose(inverse)))

    @property
    def T(self) -> "Tensor":
        return self.transpose()

    def log_softmax(self, axis: int = -1) -> "Tensor":
        # log softmax(x)_i = x_i − logsumexp(x), logsumexp(x) = m + log Σ e^{x_j − m}, m = max x
        m = self.value.max(axis=axis, keepdims=True)
        lse = m + np.log(np.exp(self.value - m).sum(axis=axis, keepdims=True))
        y = self.value - lse
        soft = np.exp(y)

        def back(g: np.ndarray) -> None:           # ∂y_i/∂x_j = δ_ij − softmax_j
            self._accumulate(g - soft * g.sum(axis=axis, keepdims=True))
        return Tensor(y, parents=(self,), backward=back, op="log_softmax")


def as_tensor(x: "Tensor | ArrayLike") -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def softmax_cross_entropy(logits: Tensor, targets: np.ndarray) -> Tensor:
    """Mean over the batch of −log softmax(logits)[target]; logits (N, C), targets (N,) ints.

    Fused: the gradient is (softmax(logits) − onehot(target)) / N, computed with the stable
    log-sum-exp so large logits neither overflow nor lose the difference."""
    targets = np.asarray(targets)
    if logits.ndim != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(f"logits must be (N, C) and targets (N,), got {logits.shape} and {targets.shape}")
    n = logits.shape[0]
    x = logits.value
    m = x.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(axis=1, keepdims=True))           # (N, 1)
    logp = x - lse                                                        # (N, C)
    loss = -logp[np.arange(n), targets].mean()

    def back(g: np.ndarray) -> None:
        d = np.exp(logp)                                                  # softmax, (N, C)
        d[np.arange(n), targets] -= 1.0
        logits._accumulate(g * d / n)
    return Tensor(loss, parents=(logits,), backward=back, op="softmax_ce")


def gradient_check(f: Callable[[list[Tensor]], Tensor], inputs: list[np.ndarray], h: float = 1e-6
                   ) -> float:
    """Max |analytic − numerical| gradient of the scalar f over all input entries (central differences)."""
    leaves = [Tensor(x.copy(), requires_grad=True) for x in inputs]
    f(leaves).backward()
    worst = 0.0
    for k, x in enumerate(inputs):
        analytic = leaves[k].grad if leaves[k].grad is not None else np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            plus = [y.copy() for y in inputs]
            minus = [y.copy() for y in inputs]
            plus[k][idx] += h
            minus[k][idx] -= h
            # ∂f/∂x_i ≈ (f(x + h e_i) − f(x − h e_i)) / 2h
            numeric = (f([Tensor(v) for v in plus]).value - f([Tensor(v) for v in minus]).value) / (2 * h)
            worst = max(worst, abs(float(analytic[idx]) - float(numeric)))
    return worst


class Linear:
    """y = x Wᵀ + b on our Tensors, initialised like torch.nn.Linear (U(±1/√fan_in))."""

    def __init__(self, fan_in: int, fan_out: int, rng: np.random.Generator) -> None:
        bound = 1.0 / np.sqrt(fan_in)
        self.weight = Tensor(rng.uniform(-bound, bound, (fan_out, fan_in)), requires_grad=True)
        self.bias = Tensor(rng.uniform(-bound, bound, (fan_out,)), requires_grad=True)

    def __call__(self, x: Tensor) -> Tensor:                              # (N, in) -> (N, out)
        return x @ self.weight.T + self.bias

    def parameters(self) -> list[Tensor]:
        return [self.weight, self.bias]


class MLP:
    """Stack of Linear layers with an activation between them, on our autograd."""

    ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu")

    def __init__(self, sizes: Sequence[int], activation: str = "relu", seed: int = 0) -> None:
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"activation {activation!r} unknown; valid: {', '.join(self.ACTIVATIONS)}")
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least input and output sizes, got {list(sizes)}")
        rng = np.random.default_rng(seed)
        self.layers = [Linear(a, b, rng) for a, b in zip(sizes[:-1], sizes[1:])]
        self.activation = activation

    def __call__(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = getattr(x, self.activation)()
        return x

    def parameters(self) -> list[Tensor]:
        return [p for layer in self.layers for p in layer.parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def sgd_step(self, lr: float) -> None:
        for p in self.parameters():
            if p.grad is not None:
                p.value -= lr * p.grad                                    # w ← w − η ∂L/∂w
