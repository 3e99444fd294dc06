"""Optimisers, learning-rate schedules and gradient clipping, with PyTorch's update rules.

Parameters are Tensors: an optimiser reads ``p.grad.data`` and updates ``p.data``
in place, in the parameter's own dtype (float32 stays float32). Gradients are
never changed in place: the engine may share one gradient array between tensors.
"""

import math

import numpy as np


class Optimizer:
    """Holds the parameters and their per-parameter state (``self.state[i]``, a dict of ndarrays)."""

    hyperparameters = ("lr",)

    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if lr < 0:
            raise ValueError(f"{type(self).__name__}: lr must be >= 0, got {lr}")
        self.lr = lr
        self.state = [{} for _ in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        for i, p in enumerate(self.params):
            if p.grad is not None:
                self.update(p.data, p.grad.data, self.state[i])

    def update(self, w, g, state):
        raise NotImplementedError

    def state_dict(self):
        """Flat name -> ndarray (``'lr'``, ``'3.exp_avg'``, ...), ready for tinygrad_attn.save."""
        out = {name: np.asarray(getattr(self, name)) for name in self.hyperparameters}
        for i, s in enumerate(self.state):
            out.update({f"{i}.{k}": np.array(v) for k, v in s.items()})
        return out

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and state; every key and shape is checked first: a failure changes nothing."""
        new = [{} for _ in self.params]
        for key, value in state_dict.items():
            if key in self.hyperparameters:
                continue
            index, _, name = key.partition(".")
            if not index.isdigit() or int(index) >= len(self.params):
                raise KeyError(f"{type(self).__name__}.load_state_dict: unexpected key {key!r} "
                               f"(this optimiser has {len(self.params)} parameters)")
            p = self.params[int(index)]
            value = np.asarray(value)
            if name == "step":
                new[int(index)][name] = int(value)
                continue
            if value.shape != p.shape:
                raise ValueError(f"{type(self).__name__}.load_state_dict: {key!r} has shape {value.shape} "
                                 f"but parameter {index} has shape {p.shape}")
            new[int(index)][name] = value.astype(p.dtype)
        missing = [h for h in self.hyperparameters if h not in state_dict]
        if missing:
            raise KeyError(f"{type(self).__name__}.load_state_dict: missing {missing}")
        for h in self.hyperparameters:
            v = np.asarray(state_dict[h])
            setattr(self, h, tuple(v.tolist()) if v.ndim else v.item())
        self.state = new


class SGD(Optimizer):
    """v = momentum v + (1 - dampening) g;  w -= lr (g + momentum v if nesterov else v), g including wd w."""

    hyperparameters = ("lr", "momentum", "dampening", "weight_decay")

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov
        self.weight_decay = weight_decay

    def update(self, w, g, state):
        if self.weight_decay:
            g = g + self.weight_decay * w
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g)  # an ndarray even for 0-d g
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        w -= self.lr * g


class Adam(Optimizer):
    """m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  w -= lr/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps).

    ``weight_decay`` adds wd * w to the gradient (L2, as torch.optim.Adam); AdamW decays the weights instead.
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{type(self).__name__}: betas must be in [0, 1), got {betas}")
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

    def update(self, w, g, state):
        b1, b2 = self.betas
        if self.weight_decay:
            if self.decoupled:
                w *= 1 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * w
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(w), exp_avg_sq=np.zeros_like(w))
        state["step"] = t = state["step"] + 1
        m, v = state["exp_avg"], state["exp_avg_sq"]
        step = np.subtract(g, m, out=np.empty_like(m))  # the one temporary: each line below reuses it
        step *= 1 - b1
        m += step  # m = b1 m + (1 - b1) g, as torch's lerp
        np.multiply(g, 1 - b2, out=step)
        step *= g
        v *= b2
        v += step  # v = b2 v + (1 - b2) g^2
        np.sqrt(v, out=step)
        step /= math.sqrt(1 - b2**t)
        step += self.eps  # the denominator
        np.divide(m, step, out=step)
        step *= self.lr / (1 - b1**t)
        w -= step


class AdamW(Adam):
    """Adam with decoupled weight decay: w *= 1 - lr wd before the Adam step (torch.optim.AdamW)."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay)


# ---------------------------------------------------------------- gradient clipping


def clip_grad_norm_(params, max_norm, norm_type=2.0):
    """Scale all gradients by max_norm / (total_norm + 1e-6) when that is < 1; return total_norm (a float).

    total_norm is the norm of the vector of every gradient entry, as torch.nn.utils.clip_grad_norm_.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if norm_type == math.inf:
        total = max(float(np.max(np.abs(g.data))) for g in grads)
    else:
        total = sum(float(np.sum(np.abs(g.data.astype(np.float64)) ** norm_type)) for g in grads)
        total **= 1 / norm_type
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        for p in params:
            if p.grad is not None:  # out of place: the array may be shared with another gradient
                p.grad = type(p.grad)(p.grad.data * np.asarray(coef, p.grad.dtype), dtype=p.grad.dtype)
    return total


# ---------------------------------------------------------------- learning-rate schedules


def noam_rate(step, d_model, warmup, factor=1.0):
    """The paper's rate: factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), for step >= 1."""
    step = max(step, 1)
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def cosine_rate(step, total_steps, warmup=0, lr=1.0, min_lr=0.0):
    """Linear warm-up to lr over ``warmup`` steps, then a half cosine to min_lr at total_steps (step >= 1)."""
    if step <= warmup:
        return lr * step / warmup
    progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


class LRScheduler:
    """Sets ``optimizer.lr = rate(n)`` before the n-th update (n = 1, 2, ...); call step() after each update.

    ``base_lr`` is the optimiser's lr when the scheduler was made.
    """

    def __init__(self, optimizer, rate):
        self.optimizer, self.rate = optimizer, rate
        self.base_lr = optimizer.lr
        self.last_step = 0
        optimizer.lr = rate(1)

    def step(self):
        self.last_step += 1
        self.optimizer.lr = self.rate(self.last_step + 1)

    def get_last_lr(self):
        return self.optimizer.lr

    def state_dict(self):
        return {"last_step": np.asarray(self.last_step), "base_lr": np.asarray(self.base_lr)}

    def load_state_dict(self, state):
        self.last_step, self.base_lr = int(state["last_step"]), float(state["base_lr"])
        self.optimizer.lr = self.rate(self.last_step + 1)


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(n) for the n-th update (n from 1; torch's LambdaLR counts from 0)."""

    def __init__(self, optimizer, lr_lambda):
        super().__init__(optimizer, lambda n: self.base_lr * lr_lambda(n))  # base_lr is set before rate(1)


class NoamLR(LRScheduler):
    """lr = noam_rate(n, d_model, warmup, factor) for the n-th update; the optimiser's own lr is not used."""

    def __init__(self, optimizer, d_model, warmup=4000, factor=1.0):
        super().__init__(optimizer, lambda n: noam_rate(n, d_model, warmup, factor))


class CosineLR(LRScheduler):
    """Linear warm-up to the optimiser's lr, then cosine decay to min_lr at total_steps (see cosine_rate)."""

    def __init__(self, optimizer, total_steps, warmup=0, min_lr=0.0):
        peak = optimizer.lr
        super().__init__(optimizer, lambda n: cosine_rate(n, total_steps, warmup, peak, min_lr))
