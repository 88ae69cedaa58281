"""Synthetic microbead density dataset with known ground truth.

Each image is a fluorescence field of view: beads are rendered as Gaussian spots of varying
size and brightness (some gathered in clumps) on an uneven background, with Poisson shot
noise and camera read noise. The label is the bead density in beads per mm^2 at a pixel
size of 1 um, so a 256x256 image (0.0655 mm^2) with 20-200 beads has a density of about
300-3000 per mm^2, the order of magnitude of the lab's real microbead data.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from scipy import ndimage

from hpstudy.atomic import atomic_path, write_text

PIXEL_SIZE_UM = 1.0
MIN_BEADS, MAX_BEADS = 20, 200  # per 256x256 field of view
SIGMAS = (1.2, 1.8, 2.6)  # bead blur radii in pixels (three bead sizes)


def render(rng: np.random.Generator, size: int) -> tuple[np.ndarray, int]:
    """Render one 8-bit grayscale image; returns (image, number of beads)."""
    scale = (size / 256) ** 2
    n_beads = int(round(rng.integers(MIN_BEADS, MAX_BEADS + 1) * scale))
    n_clumps = rng.binomial(3, 0.25)  # occasional clumps of touching beads
    clumped = min(n_beads, int(n_clumps * rng.integers(3, 9)))
    centres = rng.uniform(0, size, size=(max(n_clumps, 1), 2))
    pos = (
        np.concatenate(
            [
                rng.uniform(0, size, size=(n_beads - clumped, 2)),
                centres[rng.integers(0, len(centres), clumped)] + rng.normal(0, 3.0, (clumped, 2)),
            ]
        )
        % size
    )
    brightness = rng.lognormal(mean=np.log(1600.0), sigma=0.35, size=n_beads)
    kind = rng.integers(0, len(SIGMAS), n_beads)
    signal = np.zeros((size, size), np.float64)
    for k, sigma in enumerate(SIGMAS):
        impulses = np.zeros((size, size), np.float64)
        sel = kind == k
        np.add.at(impulses, (pos[sel, 0].astype(int), pos[sel, 1].astype(int)), brightness[sel])
        signal += ndimage.gaussian_filter(impulses, sigma, mode="wrap")
    yy, xx = np.mgrid[0:size, 0:size] / size
    gx, gy = rng.normal(0, 1, 2)
    background = rng.uniform(8, 20) * (1 + 0.3 * (gx * (xx - 0.5) + gy * (yy - 0.5)))
    photons = rng.poisson(np.clip(signal + background, 0, None)).astype(np.float64)
    image = photons + rng.normal(0, 2.0, photons.shape)  # read noise
    return np.clip(image, 0, 255).astype(np.uint8), n_beads


def density_per_mm2(n_beads: int, size: int) -> float:
    area_mm2 = (size * PIXEL_SIZE_UM / 1000.0) ** 2
    return n_beads / area_mm2


def generate(
    out_dir: str | Path, n_images: int = 1948, size: int = 256, seed: int = 0, progress: bool = True
) -> Path:
    """Write `n_images` PNGs and `density.csv` (filename,density) into `out_dir`."""
    from PIL import Image
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in tqdm(range(n_images), desc="microbeads", disable=not progress, mininterval=2):
        rng = np.random.default_rng([seed, i])
        image, n_beads = render(rng, size)
        name = f"bead_{i:05d}.png"
        with atomic_path(out_dir / name, suffix=".png") as tmp:
            Image.fromarray(image, mode="L").save(tmp, format="PNG", optimize=False)
        rows.append((name, round(density_per_mm2(n_beads, size), 4)))
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["filename", "density"])
    writer.writerows(rows)
    write_text(out_dir / "density.csv", text.getvalue())  # last: marks a complete set
    return out_dir
