"""The testnet U-Net: the standard encoder-decoder with skip connections, plus a global-context step.

Testnet's decider shape can lie 220 px from the segment it decides, beyond the ~200 px receptive field
of a four-level U-Net, so the bottleneck adds its global average (through a 1×1 convolution) to every
position, as ParseNet does. Everything else is Ronneberger et al. (2015): two 3×3 convolutions per
level, max pooling down, transposed convolutions up, concatenated skips, a 1×1 head giving logits.
"""

from __future__ import annotations

import torch
from torch import nn

_LAYERS = {2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ConvTranspose2d),
           3: (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.ConvTranspose3d)}


def _double_conv(in_channels: int, out_channels: int, dims: int = 2) -> nn.Sequential:
    conv, norm, _, _ = _LAYERS[dims]
    return nn.Sequential(
        conv(in_channels, out_channels, 3, padding=1, bias=False),
        norm(out_channels),
        nn.ReLU(inplace=True),
        conv(out_channels, out_channels, 3, padding=1, bias=False),
        norm(out_channels),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net returning one logit map per class.

    Parameters
    ----------
    in_channels : int
        Image channels (1 for testnet).
    out_channels : int
        Classes; the output has shape (N, out_channels, H, W) and holds logits.
    width : int
        Channels of the first level; each level below doubles it.
    depth : int
        Number of poolings; every spatial side must be divisible by ``2 ** depth``.
    dims : {2, 3}
        Spatial axes: images (N, C, H, W) or volumes (N, C, D, H, W).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, *, width: int = 8, depth: int = 4, dims: int = 2):
        super().__init__()
        conv, _, pool, up = _LAYERS[dims]
        self.spatial_axes = tuple(range(2, 2 + dims))
        channels = [width * 2**level for level in range(depth + 1)]
        self.encoder = nn.ModuleList(
            [_double_conv(in_channels, channels[0], dims)]
            + [_double_conv(channels[i], channels[i + 1], dims) for i in range(depth)]
        )
        self.pool = pool(2)
        self.context = nn.Sequential(conv(2 * channels[-1], channels[-1], 1), nn.ReLU(inplace=True))
        self.up = nn.ModuleList([up(channels[i + 1], channels[i], 2, stride=2) for i in reversed(range(depth))])
        self.decoder = nn.ModuleList([_double_conv(2 * channels[i], channels[i], dims)
                                      for i in reversed(range(depth))])
        self.head = conv(channels[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_context(x)[0]

    def forward_with_context(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the logits and the pooled bottleneck features (N, 2C) that the context step reads."""
        skips = []
        for level, block in enumerate(self.encoder):
            if level:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        axes = self.spatial_axes
        pooled = torch.cat([x.mean(dim=axes, keepdim=True), x.amax(dim=axes, keepdim=True)], dim=1)
        x = x + self.context(pooled)
        for up, block, skip in zip(self.up, self.decoder, reversed(skips[:-1]), strict=True):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x), pooled.flatten(1)


def testnet_unet() -> UNet:
    """Return an untrained U-Net with the testnet architecture (1 channel in, 1 logit map out)."""
    return UNet(in_channels=1, out_channels=1, width=4, depth=4)


def testnet3d_unet() -> UNet:
    """Return an untrained 3-D U-Net for the 3-D testnet (48^3 volumes: three poolings to 6^3)."""
    return UNet(in_channels=1, out_channels=1, width=4, depth=3, dims=3)
