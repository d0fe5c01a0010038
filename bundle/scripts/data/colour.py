"""Turning any image PIL can open into one grey channel, or refusing it with the reason.

MONAI's ``PILReader`` returns the stored channels as they are (``np.asarray`` of the PIL image): a palette (``P``)
image gives palette indices, a CMYK JPEG gives C, M, Y and K as four channels, an ``LA`` image two. None of these
is a grey radiograph. :func:`pil_to_grey` is passed to ``PILReader(converter=...)`` and converts every colour model
(``PIL.Image.MODES``) to a single-channel image with the right grey values, or raises :class:`GreyConversionError`:

=====================================  ===================================================================
mode                                   result
=====================================  ===================================================================
``L``, ``I``, ``I;16*``, ``F``         unchanged (grey at its own bit depth)
``RGB``, ``RGBX``, ``HSV``, ``P``      ITU-R BT.601 luma of R, G, B, in float32 (no rounding to 8 bits)
``CMYK``                               PIL's CMYK -> RGB (R = 255 - C - K, clipped), then luma
``YCbCr``                              the Y channel (BT.601 luma already)
``LA``, ``La``, ``PA``, ``RGBA``,      as above, when every pixel is opaque; an image with transparent
``RGBa``                               pixels is refused (what lies under them is unknown)
``1``                                  refused: a bilevel image has no grey levels
``LAB``                                refused: CIELAB lightness is not a linear grey scale
anything else                          refused, naming the mode
=====================================  ===================================================================
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["GreyConversionError", "LUMA_WEIGHTS", "pil_to_grey"]

#: ITU-R BT.601 luma weights for R, G, B (the weights PIL's own ``convert("L")`` uses).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

_GREY_MODES = ("L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_REFUSED = {
    "1": "a 1-bit (black and white) image has no grey levels",
    "LAB": "CIELAB colour images are not supported (lightness is not a linear grey scale)",
}


class GreyConversionError(ValueError):
    """The image's colour model cannot be turned into a grey radiograph; the message says why."""


def _luma(rgb: Image.Image) -> Image.Image:
    """Float32 (mode ``F``) luma of an ``RGB`` image, without PIL's rounding to 8 bits."""
    channels = np.asarray(rgb.convert("RGB"), dtype=np.float32)
    return Image.fromarray((channels * np.asarray(LUMA_WEIGHTS, np.float32)).sum(axis=-1), mode="F")


def _check_opaque(image: Image.Image) -> None:
    alpha = np.asarray(image.getchannel(image.getbands()[-1]))  # "A", or "a" for premultiplied modes
    if alpha.min() < alpha.max() or alpha.min() < 255:
        share = float((alpha < 255).mean())
        raise GreyConversionError(
            f"{image.mode} image with {share:.1%} transparent or translucent pixels: what lies under them is "
            "unknown; export the radiograph without an alpha channel"
        )


def pil_to_grey(image: Image.Image) -> Image.Image:
    """Return a single-channel PIL image (mode ``L``, ``I``, ``I;16*`` or ``F``) with the grey values of ``image``.

    Raises:
        GreyConversionError: the mode is refused (see the module docstring).
    """
    mode = image.mode
    if mode in _GREY_MODES:
        return image
    if mode in _REFUSED:
        raise GreyConversionError(f"colour model {mode!r}: {_REFUSED[mode]}")
    if mode == "P":  # palette indices are not grey levels: look them up; a palette may carry transparency
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        mode = image.mode
    if mode in _ALPHA_MODES:
        _check_opaque(image)  # opaque: premultiplied (La, RGBa) and straight alpha hold the same colours
        if mode in ("LA", "La"):
            return image.getchannel(0)
        return _luma(image)
    if mode == "YCbCr":
        return image.getchannel(0)
    if mode in ("RGB", "RGBX", "RGBA", "HSV", "CMYK"):
        return _luma(image)
    raise GreyConversionError(f"colour model {mode!r} is not supported; export the radiograph as greyscale")
