"""Our classifiers in PyTorch with the Flax weights, for the benches against torch code.

Only the benches that compare with PyTorch references use these (:mod:`bench.reference_attacks`
gives the classifier to advertorch and Foolbox's PyTorchModel, :mod:`bench.apgd_reference`
to torchattacks and ART; :mod:`bench.speed` times torch's attack step on it; REMIX's
networks and ``defend`` in torch: :mod:`bench.torch_remix`). Each port takes NHWC images
like the Flax model; the benches check its outputs against ours before timing or
attacking it.
"""

from __future__ import annotations


def torch_port(pre):
    """`pre`'s classifier (a :class:`Pretrained`) in torch, in eval mode; NHWC images in."""
    from remix_jax.models.classifiers import CIFARResNet

    if isinstance(pre.classifier, CIFARResNet):
        return torch_port_cifar(pre.classifier_params, pre.classifier.logit_scale)
    return torch_port_mnist(pre.classifier_params)


def checked_port(pre, logits_fn, x, tolerance: float = 1e-4):
    """(the torch port of ``pre``'s classifier, its check), or the bench exits.

    The port must give ``logits_fn``'s logits within ``tolerance`` on the (N, H, W, C)
    images ``x`` and as many uniform-noise images (off the data manifold); the check
    records the largest difference, the images checked and torch's threads.
    """
    import sys

    import numpy as np
    import torch

    net = torch_port(pre)
    noise = np.random.default_rng(0).uniform(size=x.shape).astype(np.float32)
    check = np.concatenate([x, noise])
    theirs, ours = [], []
    with torch.no_grad():
        for s in range(0, len(check), 500):
            theirs.append(net(torch.from_numpy(check[s : s + 500])).numpy())
            ours.append(np.asarray(logits_fn(check[s : s + 500])))
    diff = float(np.abs(np.concatenate(theirs) - np.concatenate(ours)).max())
    port = {
        "max_abs_logit_diff": diff,
        "images_checked": len(check),
        "torch_threads": torch.get_num_threads(),
    }
    print(f"torch port: max |logit diff| {diff:.2e} on {len(check)} images", flush=True)
    if not diff <= tolerance:
        sys.exit(f"error: the torch port differs from the Flax model by {diff:.2e} > {tolerance:g}")
    return net, port


def torch_port_cifar(variables, logit_scale: float):
    """The narrow CIFAR-10 ResNet-9 in torch with the Flax weights (NHWC in).

    Mirrors ``models.classifiers.CIFARResNet``: eight 3x3 SAME convs without bias, each
    followed by BatchNorm (running statistics, eps 1e-5 as Flax's) and ReLU; 2x2
    max-pools; two residual blocks; a global max-pool; dense 10; logits x logit_scale.
    Flax numbers its layers in call order, so Conv_i / BatchNorm_i map to layer i.
    """
    import numpy as np
    import torch
    from torch import nn

    params, stats = variables["params"], variables["batch_stats"]
    kernels = [np.array(params[f"Conv_{i}"]["kernel"]) for i in range(8)]
    dense = params["Dense_0"]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(
                [nn.Conv2d(k.shape[2], k.shape[3], 3, padding=1, bias=False) for k in kernels]
            )
            self.norms = nn.ModuleList([nn.BatchNorm2d(k.shape[3], eps=1e-5) for k in kernels])
            self.dense = nn.Linear(dense["kernel"].shape[0], 10)

        def layer(self, i, h):
            return torch.relu(self.norms[i](self.convs[i](h)))

        def forward(self, x):  # (B, 32, 32, 3)
            pool = nn.functional.max_pool2d
            h = self.layer(0, x.permute(0, 3, 1, 2))
            h = pool(self.layer(1, h), 2)
            h = h + self.layer(3, self.layer(2, h))
            h = pool(self.layer(4, h), 2)
            h = pool(self.layer(5, h), 2)
            h = h + self.layer(7, self.layer(6, h))
            return self.dense(h.amax(dim=(2, 3))) * logit_scale

    net = Net()
    with torch.no_grad():
        for i, (conv, norm) in enumerate(zip(net.convs, net.norms, strict=True)):
            conv.weight.copy_(torch.from_numpy(kernels[i].transpose(3, 2, 0, 1).copy()))
            bn, st = params[f"BatchNorm_{i}"], stats[f"BatchNorm_{i}"]
            norm.weight.copy_(torch.from_numpy(np.array(bn["scale"])))
            norm.bias.copy_(torch.from_numpy(np.array(bn["bias"])))
            norm.running_mean.copy_(torch.from_numpy(np.array(st["mean"])))
            norm.running_var.copy_(torch.from_numpy(np.array(st["var"])))
        net.dense.weight.copy_(torch.from_numpy(np.array(dense["kernel"]).T.copy()))
        net.dense.bias.copy_(torch.from_numpy(np.array(dense["bias"])))
    return net.eval()


def torch_port_mnist(params):
    """The MagNet MNIST CNN in torch with the Flax weights; takes NHWC like the Flax one.

    conv32-conv32-pool-conv64-conv64-pool-fc200-fc200-fc10 (3x3 VALID, ReLU). The
    feature map goes back to NHWC before flattening, so the first dense layer's
    weights keep Flax's (h, w, c) row order.
    """
    import numpy as np
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(
                [nn.Conv2d(i, o, 3) for i, o in ((1, 32), (32, 32), (32, 64), (64, 64))]
            )
            self.dense = nn.ModuleList(
                [nn.Linear(1024, 200), nn.Linear(200, 200), nn.Linear(200, 10)]
            )

        def forward(self, x):  # (B, 28, 28, 1)
            h = x.permute(0, 3, 1, 2)
            for k, conv in enumerate(self.convs):
                h = torch.relu(conv(h))
                if k % 2:
                    h = nn.functional.max_pool2d(h, 2)
            h = h.permute(0, 2, 3, 1).reshape(h.shape[0], -1)
            h = torch.relu(self.dense[0](h))
            h = torch.relu(self.dense[1](h))
            return self.dense[2](h)

    net = Net()
    convs = [params[f"Conv_{i}"] for i in range(4)]
    dense = [params[f"Dense_{i}"] for i in range(3)]
    with torch.no_grad():
        for mod, p in zip(net.convs, convs, strict=True):  # HWIO -> OIHW
            mod.weight.copy_(torch.from_numpy(np.array(p["kernel"]).transpose(3, 2, 0, 1).copy()))
            mod.bias.copy_(torch.from_numpy(np.array(p["bias"])))
        for mod, p in zip(net.dense, dense, strict=True):  # (in, out) -> (out, in)
            mod.weight.copy_(torch.from_numpy(np.array(p["kernel"]).T.copy()))
            mod.bias.copy_(torch.from_numpy(np.array(p["bias"])))
    return net.eval()
