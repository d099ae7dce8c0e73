"""One search step of CW-L2 / EAD, ours and written plainly in torch, and a timer.

For :mod:`bench.speed`: ``--part step`` times both sides on the same network and
batch, ``--part overhead`` times ours against the bare network gradient. The torch
loops are the floor any PyTorch implementation pays: CW = tanh change of variables,
margin loss, backward, ``torch.optim.Adam``; EAD = FISTA with the projected shrinkage
and the square-root learning-rate decay; both judge each iteration's candidate and
keep the best success, as every implementation must (EAD: one more forward pass, on
the new iterate).
"""

from __future__ import annotations

import time


def best_time(fn, repeats: int) -> float:
    """Best wall seconds of ``repeats`` calls after one warm-up call."""
    import jax

    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def our_steps(logits_fn, x, y, iterations: int, beta: float) -> dict:
    """{"cw", "ead"}: functions of no arguments running our attack for one search step.

    ``iterations`` iterations at c = 1 with early abort off, so every call does the
    same work (EAD with L1 weight ``beta``). ``x``: (B, H, W, C), ``y``: (B,).
    """
    from remix_jax.attacks import cw_l2, ead

    settings = dict(
        binary_search_steps=1, max_iterations=iterations, abort_early=False, initial_const=1.0
    )
    return {
        "cw": lambda: cw_l2(logits_fn, x, y, **settings),
        "ead": lambda: ead(logits_fn, x, y, beta=beta, **settings),
    }


def torch_cw_steps(net, x, y, iterations, *, confidence=0.0, const=1.0, lr=1e-2):
    """``iterations`` plain CW-L2 iterations in torch; returns a function that runs them."""
    import torch

    x = torch.from_numpy(x)
    y = torch.from_numpy(y).long()
    onehot = torch.nn.functional.one_hot(y, 10).float()
    w0 = torch.atanh((x * 2 - 1) * 0.999999)

    def run():
        w = w0.clone().requires_grad_()
        opt = torch.optim.Adam([w], lr=lr)
        best_l2 = torch.full((len(x),), float("inf"))
        best_adv = x.clone()
        for _ in range(iterations):
            opt.zero_grad(set_to_none=True)
            adv = (torch.tanh(w) + 1) / 2
            logits = net(adv)
            real = (logits * onehot).sum(1)
            other = (logits - 1e4 * onehot).max(1).values
            l2 = ((adv - x) ** 2).sum((1, 2, 3))
            loss = l2 + const * torch.clamp(real - other + confidence, min=0)
            loss.sum().backward()
            opt.step()
            with torch.no_grad():  # judge the candidate, keep the best success
                better = (other - real >= confidence) & (l2 < best_l2)
                best_l2 = torch.where(better, l2, best_l2)
                best_adv = torch.where(better[:, None, None, None], adv, best_adv)
        return best_adv

    return run


def torch_ead_steps(net, x, y, iterations, *, beta=0.1, confidence=0.0, const=1.0, lr=1e-2):
    """``iterations`` plain EAD (FISTA) iterations in torch."""
    import torch

    x = torch.from_numpy(x)
    y = torch.from_numpy(y).long()
    onehot = torch.nn.functional.one_hot(y, 10).float()

    def run():
        current, slack = x.clone(), x.clone()
        best_score = torch.full((len(x),), float("inf"))
        best_adv = x.clone()
        for k in range(iterations):
            slack.requires_grad_()
            logits = net(slack)
            real = (logits * onehot).sum(1)
            other = (logits - 1e4 * onehot).max(1).values
            loss = ((slack - x) ** 2).sum() + const * torch.clamp(
                real - other + confidence, min=0
            ).sum()
            (grad,) = torch.autograd.grad(loss, slack)
            with torch.no_grad():
                rate = lr * (1 - k / iterations) ** 0.5
                z = slack - rate * grad
                diff = z - x
                shrunk = torch.where(
                    diff > beta,
                    torch.clamp(z - beta, max=1.0),
                    torch.where(diff < -beta, torch.clamp(z + beta, min=0.0), x),
                )
                slack = shrunk + k / (k + 3) * (shrunk - current)
                current = shrunk
                # judge the new iterate (EN rule), keep the best success
                judged = net(shrunk)
                margin = (judged - 1e4 * onehot).max(1).values - (judged * onehot).sum(1)
                delta = shrunk - x
                score = beta * delta.abs().sum((1, 2, 3)) + (delta**2).sum((1, 2, 3))
                better = (margin >= confidence) & (score < best_score)
                best_score = torch.where(better, score, best_score)
                best_adv = torch.where(better[:, None, None, None], shrunk, best_adv)
        return best_adv

    return run
