"""REMIX in PyTorch with the Flax weights: the stride-1 autoencoders and ``defend``.

For :mod:`bench.speed` (``--part defend``, :mod:`bench.speed_defend`), which times
torch's ``defend`` beside ours after checking that the two agree. The classifier ports
are :mod:`bench.torch_ports`'.
"""

from __future__ import annotations


def torch_autoencoder(params, config):
    """The stride-1 SkipAutoencoder in torch (NCHW, channels_last), same weights."""
    import numpy as np
    import torch
    from torch import nn

    if set(config.strides) != {1}:
        raise ValueError("the torch port covers stride-1 autoencoders only")
    depth = len(config.features)
    in_ch = config.channels + int(config.mask_channel)

    def conv(p):  # a stride-1 SAME transposed conv (Flax, kernel not flipped) is this conv
        kernel = np.asarray(p["kernel"])  # (3, 3, in, out)
        layer = nn.Conv2d(kernel.shape[2], kernel.shape[3], 3, padding=1)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            layer.bias.copy_(torch.from_numpy(np.array(p["bias"])))
        return layer

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.ModuleList([conv(params[f"Conv_{i}"]) for i in range(depth)])
            self.dec = nn.ModuleList([conv(params[f"ConvTranspose_{j}"]) for j in range(depth)])

        def forward(self, x, mask=None):  # NCHW
            h = x
            if config.mask_channel:
                h = torch.cat([x, 2 * mask.mean(1, keepdim=True) - 1], 1)
            encoded = []
            for layer in self.enc:
                h = torch.relu(layer(h))
                encoded.append(h)
            for j, i in enumerate(reversed(range(1, depth))):
                h = self.dec[j](h)
                if i % config.skip_every == 0:
                    h = h + encoded[i - 1]
                h = torch.relu(h)
            return torch.sigmoid(self.dec[depth - 1](h))

    assert in_ch == Net().enc[0].in_channels
    return Net().eval().to(memory_format=torch.channels_last)


def torch_defense(remix, x, masks):
    """``defend`` (reformer, then the masked copies inpainted and summed) in torch.

    Args:
      remix: the :class:`RemixParams` whose stride-1 reformer and inpainter are ported.
      x: (B, H, W, C) images (numpy or JAX), float32.
      masks: (n_masks, B, H, W, 1) numpy float32, the masks ``defend`` draws.

    Returns:
      A function of no arguments giving the (B, C, H, W) defended batch.
    """
    import numpy as np
    import torch

    h, w, c = x.shape[1:]
    reformer = torch_autoencoder(remix.reformer, remix.reformer_config)
    inpainter = torch_autoencoder(remix.inpainter, remix.inpainter_config)
    tx = torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2)
    tm = torch.from_numpy(masks).permute(0, 1, 4, 2, 3).reshape(-1, 1, h, w)

    def torch_defend():
        with torch.inference_mode():
            reformed = reformer(tx)
            copies = reformed.repeat(remix.n_masks, 1, 1, 1) * tm
            restored = inpainter(copies, tm) * (1 - tm)
            return restored.reshape(remix.n_masks, len(x), c, h, w).sum(0)

    return torch_defend
