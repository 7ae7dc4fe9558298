"""Training data in memory and segmentation augmentations (numpy + OpenCV, no torch).

Files are found and read by :mod:`engine.models.datasets` (shared with evaluation).
All randomness comes from an explicit ``numpy.random.Generator`` so that a resumed
training run draws exactly the same crops as an uninterrupted one.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..models.datasets import Sample, list_samples, read_image_bgr, read_label
from .. import scales
from ..errors import StudioError

PHOTOMETRIC = ("none", "basic", "strong")

def load_split(root: str | Path, split: str, limit: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """All RGB images and labels of a split in memory."""
    return load_samples(list_samples(root, split)[:limit])


def load_samples(samples: list[Sample]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RGB images and labels in memory (CamVid train+val is ~250 MB: cheap, and decoding
    JPEGs once instead of every epoch matters on 2 CPU cores)."""
    images = [cv2.cvtColor(read_image_bgr(s.image), cv2.COLOR_BGR2RGB) for s in samples]
    labels = [read_label(s.label) for s in samples]
    for s, im, lb in zip(samples, images, labels):
        if im.shape[:2] != lb.shape:
            raise StudioError(f"{s.name}: image {im.shape[:2]} and label {lb.shape} sizes differ")
    return images, labels


def class_frequencies(labels: list[np.ndarray], num_classes: int) -> np.ndarray:
    """Fraction of labelled (non-ignored) pixels per class."""
    counts = np.zeros(num_classes, np.float64)
    for lb in labels:
        counts += np.bincount(lb.ravel(), minlength=256)[:num_classes]
    return counts / max(counts.sum(), 1.0)


def class_weights(freq: np.ndarray, mode: str) -> np.ndarray | None:
    """Loss weights per class. 'none': None; 'sqrt': (median/freq)^0.5, a mild boost of
    rare classes; 'enet': 1/ln(1.02 + freq) (ENet's, strong). Normalised to mean 1."""
    if mode == "none":
        return None
    f = np.maximum(freq, 1e-6)
    if mode == "sqrt":
        w = np.sqrt(np.median(f) / f)
    elif mode == "enet":
        w = 1.0 / np.log(1.02 + f)
    else:
        raise StudioError(f"unknown class weighting {mode!r} (none, sqrt, enet)")
    return (w / w.mean()).astype(np.float32)


@dataclass(frozen=True)
class AugConfig:
    crop: tuple[int, int] = (288, 384)  # (h, w)
    scale_range: tuple[float, float] = (0.5, 2.0)
    scale_sampling: str = "uniform"  # uniform | log (log-uniform: as many draws below 1.22 as above, for 0.5-3)
    flip: bool = True
    photometric: str | bool = "basic"  # none | basic (mmseg colour jitter) | strong (+ blur, noise, JPEG)
    cat_max_ratio: float = 0.75  # mmseg: re-draw a crop where one class covers more than this
    rare_crop: float = 0.0  # probability of centring the crop on a pixel of a rarely seen class
    ignore_index: int = 11
    paste: float = 0.0  # probability that a crop gets the paste_classes pixels of the batch's next crop
    paste_classes: tuple[int, ...] = ()
    colour_cast: float = 0.0  # > 0: red and blue gains drawn in [1/(1+c), 1+c] (white balance)


def random_scale(img: np.ndarray, lbl: np.ndarray, rng: np.random.Generator, lo: float, hi: float,
                 sampling: str = "uniform") -> tuple[np.ndarray, np.ndarray]:
    """Resize by a random factor in [lo, hi], uniform or log-uniform: bilinear image, nearest label.

    Uniform in 0.5-3.0 draws a factor above 1.75 half the time, so the model learns objects
    larger than CamVid shows them; log-uniform centres the draws on the geometric mean (1.22),
    as close to native size as to 720p at full size."""
    if sampling == "log":
        s = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    elif sampling == "uniform":
        s = rng.uniform(lo, hi)
    else:
        raise StudioError(f"unknown scale sampling {sampling!r} (uniform, log)")
    h, w = lbl.shape
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    lbl = cv2.resize(lbl, (nw, nh), interpolation=cv2.INTER_NEAREST)
    return img, lbl


def pad_to(img: np.ndarray, lbl: np.ndarray, ch: int, cw: int, ignore: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom/right to at least (ch, cw): image with 0, label with ignore."""
    h, w = lbl.shape
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    if ph or pw:
        img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        lbl = cv2.copyMakeBorder(lbl, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=ignore)
    return img, lbl


def random_crop(img: np.ndarray, lbl: np.ndarray, rng: np.random.Generator, cfg: AugConfig,
                rare_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Crop of cfg.crop size. With probability cfg.rare_crop the crop is centred (with
    jitter) on a random pixel of a class drawn by ``rare_weight`` among the classes
    present: small objects (poles, signs, cyclists) are otherwise seen too rarely.
    Else mmseg's cat_max_ratio rule: up to 10 draws until no class covers > ratio."""
    ch, cw = cfg.crop
    img, lbl = pad_to(img, lbl, ch, cw, cfg.ignore_index)
    h, w = lbl.shape
    if rare_weight is not None and cfg.rare_crop > 0 and rng.random() < cfg.rare_crop:
        present = np.unique(lbl)
        present = present[present < len(rare_weight)]
        if len(present):
            p = rare_weight[present] / rare_weight[present].sum()
            c = rng.choice(present, p=p)
            ys, xs = np.nonzero(lbl == c)
            k = rng.integers(len(ys))
            y0 = int(np.clip(ys[k] - ch // 2 + rng.integers(-ch // 4, ch // 4 + 1), 0, h - ch))
            x0 = int(np.clip(xs[k] - cw // 2 + rng.integers(-cw // 4, cw // 4 + 1), 0, w - cw))
            return img[y0:y0 + ch, x0:x0 + cw], lbl[y0:y0 + ch, x0:x0 + cw]
    for _ in range(10):
        y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        crop = lbl[y0:y0 + ch, x0:x0 + cw]
        if cfg.cat_max_ratio >= 1.0:
            break
        counts = np.bincount(crop.ravel(), minlength=256)
        counts[cfg.ignore_index] = 0
        counts = counts[counts > 0]
        if len(counts) > 1 and counts.max() / counts.sum() < cfg.cat_max_ratio:
            break
    return img[y0:y0 + ch, x0:x0 + cw], lbl[y0:y0 + ch, x0:x0 + cw]


def photometric_distortion(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """mmseg's PhotoMetricDistortion on an RGB uint8 image: brightness (+-32), contrast
    (0.5-1.5), saturation (0.5-1.5), hue (+-18 of 180), each with probability 1/2,
    contrast either before or after the HSV changes."""
    out = img.astype(np.float32)
    if rng.random() < 0.5:
        out = out + rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5

    def contrast(x: np.ndarray) -> np.ndarray:
        return x * rng.uniform(0.5, 1.5) if rng.random() < 0.5 else x

    if contrast_first:
        out = contrast(out)
    do_sat, do_hue = rng.random() < 0.5, rng.random() < 0.5
    sat, hue = rng.uniform(0.5, 1.5), int(rng.integers(-18, 19))
    if do_sat or do_hue:
        hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        if do_sat:
            hsv[..., 1] = np.clip(hsv[..., 1] * sat, 0, 255)
        if do_hue:
            hsv[..., 0] = (hsv[..., 0] + hue) % 180
        out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    if not contrast_first:
        out = contrast(out)
    return np.clip(out, 0, 255).astype(np.uint8)


def drive_weights(drives: list[str], power: float) -> np.ndarray | None:
    """Probability of drawing each training frame, proportional to (its drive's frame count)
    to the minus ``power``: 1 draws every drive equally often, 0 is the plain shuffle (None).
    Why: one drive (0016E5) supplies most of CamVid's labelled frames, and what users meet is
    footage of other roads. On CamVid's held-out drives 1 was worse and 0.5 no better
    (docs/training.md)."""
    if not 0 <= power <= 1:
        raise StudioError(f"--drive-balance {power:g}: must be between 0 (off) and 1 (every drive equally often)")
    if power == 0:
        return None
    counts = Counter(drives)
    w = np.array([counts[d] ** -power for d in drives], np.float64)
    return w / w.sum()


def make_batches(n: int, batch: int, rng: np.random.Generator, p: np.ndarray | None = None) -> list[np.ndarray]:
    """Shuffled index batches of one epoch (``p``: n frames drawn with these probabilities,
    with replacement); the last incomplete batch is dropped (BN)."""
    perm = rng.permutation(n) if p is None else rng.choice(n, size=n, p=p)
    return [perm[i:i + batch] for i in range(0, n - batch + 1, batch)]


def check_colour_cast(strength: float) -> None:
    """A bad ``--colour-cast`` is one line (above 1 the gains would pass 0.5 and 2)."""
    if not 0 <= strength <= 1:
        raise StudioError(f"--colour-cast {strength:g}: must be between 0 (off) and 1")


def colour_cast(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A camera's white balance: the red and the blue channel each multiplied by a gain
    drawn log-uniform in [1/(1+strength), 1+strength], green kept. CamVid's drives each have
    one cast (mean red/green 0.85 at dusk on 0001TP, 0.96 on 0016E5, 1.00 on 0006R0, with a
    spread of 0.01-0.02 within a drive), and the mmseg hue shift rotates hues rather than
    tinting the frame, so without this a model sees as many casts as it has drives."""
    span = np.log1p(strength)
    gains = np.exp(rng.uniform(-span, span, 2))
    out = img.astype(np.float32) * np.array([gains[0], 1.0, gains[1]], np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera and codec faults users' footage has and CamVid's clean frames lack, each with
    probability 0.3: Gaussian blur (sigma 0.3-1.5: focus, motion), Gaussian noise (sigma
    2-10 grey levels: sensor at dusk), JPEG re-encoding (quality 30-90: web video).
    Only the image changes; the geometry, and so the label, stays as it is."""
    do_blur, do_noise, do_jpeg = rng.random(3) < 0.3
    sigma, noise, quality = rng.uniform(0.3, 1.5), rng.uniform(2.0, 10.0), int(rng.integers(30, 91))
    if do_blur:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma)
    if do_noise:
        seed = int(rng.integers(2**31))
        n = np.random.default_rng(seed).normal(0.0, noise, img.shape).astype(np.float32)
        img = np.clip(img.astype(np.float32) + n, 0, 255).astype(np.uint8)
    if do_jpeg:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:  # channel order does not matter for a round trip through the codec
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img


def photometric_mode(value: str | bool) -> str:
    """AugConfig.photometric as one of PHOTOMETRIC (True/False from older configs)."""
    if value is True:
        return "basic"
    if value is False:
        return "none"
    if value not in PHOTOMETRIC:
        raise StudioError(f"unknown photometric mode {value!r} ({', '.join(PHOTOMETRIC)})")
    return value


def augment(img: np.ndarray, lbl: np.ndarray, rng: np.random.Generator, cfg: AugConfig,
            rare_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Training augmentation of one RGB image and its label: scale, crop, flip, colour.
    Returns (crop_h, crop_w, 3) uint8 and (crop_h, crop_w) uint8 with ignore in padding."""
    img, lbl = random_scale(img, lbl, rng, *cfg.scale_range, cfg.scale_sampling)
    img, lbl = random_crop(img, lbl, rng, cfg, rare_weight)
    if cfg.flip and rng.random() < 0.5:
        img, lbl = img[:, ::-1], lbl[:, ::-1]
    if cfg.colour_cast > 0:
        img = colour_cast(img, rng, cfg.colour_cast)
    mode = photometric_mode(cfg.photometric)
    if mode != "none":
        img = photometric_distortion(np.ascontiguousarray(img), rng)
    if mode == "strong":
        img = degrade(img, rng)
    return np.ascontiguousarray(img), np.ascontiguousarray(lbl)


def paste_classes(dst: tuple[np.ndarray, np.ndarray], src: tuple[np.ndarray, np.ndarray],
                  classes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``dst`` (image, label) with the pixels of ``classes`` in ``src`` (a crop of the same
    size) copied over, image and label alike: the thin rare classes shown against other
    backgrounds than the few their frames have (copy-paste augmentation)."""
    mask = np.isin(src[1], classes)
    if not mask.any():
        return dst
    img, lbl = dst[0].copy(), dst[1].copy()
    img[mask], lbl[mask] = src[0][mask], src[1][mask]
    return img, lbl


def normalise(batch_rgb: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """NHWC uint8 RGB -> NCHW float32 normalised (the model's input)."""
    x = (batch_rgb.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def round_to_multiple(n: int, m: int = 32) -> int:
    """Nearest multiple of m (at least m): the network input side for a frame side n."""
    return scales.round_to_multiple(n, m)
