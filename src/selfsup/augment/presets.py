"""Named augmentation presets: the papers' view pipelines. A recipe or ``augment.preset=NAME`` picks
one; any ``augment.*`` option given after it overrides a single parameter."""

from __future__ import annotations

from typing import Any

# SimCLR (Chen et al. 2020, App. A): colour jitter of strength s is brightness, contrast and
# saturation 0.8·s and hue 0.2·s, applied with p 0.8; ImageNet uses s = 1 and blur with p 0.5,
# CIFAR-10 s = 0.5 and no blur (App. B.9).
_SIMCLR = dict(
    views=2,
    crop_scale=(0.08, 1.0),
    crop_ratio=(3 / 4, 4 / 3),
    flip_p=0.5,
    jitter_p=0.8,
    brightness=0.8,
    contrast=0.8,
    saturation=0.8,
    hue=0.2,
    grayscale_p=0.2,
    blur_p=[0.5],
    solarize_p=[0.0],
    local_views=0,
)

PRESETS: dict[str, dict[str, Any]] = {
    "simclr": _SIMCLR,
    "simclr_cifar": {
        **_SIMCLR,
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.4,
        "hue": 0.1,
        "blur_p": [0.0],
    },
    # BYOL (Grill et al. 2020, Table 6): asymmetric views, blur always on view 1 and with p 0.1 on
    # view 2, solarisation only on view 2 with p 0.2; colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8.
    "byol": {
        **_SIMCLR,
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.2,
        "hue": 0.1,
        "blur_p": [1.0, 0.1],
        "solarize_p": [0.0, 0.2],
    },
    # DINO (Caron et al. 2021, official code): BYOL's two global views (crops 0.4-1) plus 8 local
    # crops (0.05-0.4) of 96/224 of the side, blurred with p 0.5.
    "dino": {
        **_SIMCLR,
        "crop_scale": (0.4, 1.0),
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.2,
        "hue": 0.1,
        "blur_p": [1.0, 0.1],
        "solarize_p": [0.0, 0.2],
        "local_views": 8,
        "local_crop_scale": (0.05, 0.4),
        "local_blur_p": 0.5,
    },
    # MAE (He et al. 2022): one view, random resized crop 0.2-1 and flip only.
    "mae": dict(
        views=1,
        crop_scale=(0.2, 1.0),
        crop_ratio=(3 / 4, 4 / 3),
        flip_p=0.5,
        jitter_p=0.0,
        grayscale_p=0.0,
        blur_p=[0.0],
        solarize_p=[0.0],
        local_views=0,
    ),
    # No augmentation: the image as it is (auto-regressive models learn the data's own distribution).
    "none": dict(
        views=1,
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip_p=0.0,
        jitter_p=0.0,
        grayscale_p=0.0,
        blur_p=[0.0],
        solarize_p=[0.0],
        local_views=0,
    ),
    # Small grey images such as the 8×8 digits (tuned with SimCLR, see README): gentle crops
    # (0.4-1), no flip (digits are not mirror-symmetric), brightness and contrast only.
    "small": dict(
        views=2,
        crop_scale=(0.4, 1.0),
        crop_ratio=(3 / 4, 4 / 3),
        flip_p=0.0,
        jitter_p=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.0,
        hue=0.0,
        grayscale_p=0.0,
        blur_p=[0.0],
        solarize_p=[0.0],
        local_views=0,
    ),
}

ABLATIONS: dict[str, list[str]] = {
    "crop": ["augment.crop_scale=[1.0,1.0]", "augment.crop_ratio=[1.0,1.0]"],
    "color": ["augment.jitter_p=0"],
    "grayscale": ["augment.grayscale_p=0"],
    "blur": ["augment.blur_p=[0.0]", "augment.local_blur_p=0"],
    "solarize": ["augment.solarize_p=[0.0]"],
    "flip": ["augment.flip_p=0"],
}
"""What removing each augmentation sets (the crop keeps the whole image)."""
