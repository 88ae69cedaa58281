"""Prepare a dataset once: check, subsample, resize, split, and write one compact file.

The prepared file (`torch.save`, zip format, memory-mappable) holds uint8 images (NCHW),
targets, split indices, normalisation statistics and a manifest with the SHA-256 of every
source file. Training only ever reads this file, and refuses one whose format or content
checksum does not match.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from hpstudy.atomic import atomic_path, write_json
from hpstudy.config import kept_samples
from hpstudy.datasets import DatasetError, RawDataset, read_dataset

FORMAT = "hpstudy-prepared/1"
SPLITS = ("train", "val", "test")
# `dataset.split.seed: per_run`: each run draws its split from its own seed (run_split); the
# prepared file keeps the pool and the split of FIXED_SEED for its manifest and checksum
PER_RUN = "per_run"
FIXED_SEED = 42


class PreparedError(ValueError):
    """A prepared file is missing, of another format, or corrupted."""


def to_uint8(images: list[np.ndarray]) -> tuple[list[np.ndarray], str]:
    """8-bit stays; 16-bit is scaled by the dataset-wide maximum so relative brightness
    between images (the signal a density model uses) is preserved."""
    if images[0].dtype == np.uint8:
        return images, "uint8 as stored"
    top = max(int(im.max()) for im in images) or 1
    out = [
        np.clip(np.rint(im.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
        for im in images
    ]
    return out, f"uint16 scaled by 255/{top} (dataset maximum)"


def to_channels(image: np.ndarray, channels: int | None) -> np.ndarray:
    if channels is None or image.shape[2] == channels:
        return image
    if channels == 1:  # ITU-R 601 luma
        gray = image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return np.rint(gray)[..., None].astype(np.uint8)
    return np.repeat(image, 3, axis=2)


def resize_batch(images: list[np.ndarray], size: int | None) -> np.ndarray:
    """Stack HxWxC uint8 images into NxCxSxS, resizing with antialiased bilinear filtering."""
    import torch
    import torch.nn.functional as F

    shapes = {im.shape for im in images}
    if size is None:
        if len(shapes) > 1:
            raise DatasetError(
                f"images have different sizes {sorted(shapes)[:3]}; set "
                "dataset.image_size in the study to resize them"
            )
        return np.stack(images).transpose(0, 3, 1, 2).copy()
    out = np.empty((len(images), images[0].shape[2], size, size), np.uint8)
    for i, im in enumerate(images):
        if im.shape[:2] == (size, size):
            out[i] = im.transpose(2, 0, 1)
            continue
        t = torch.from_numpy(im).permute(2, 0, 1)[None].float()
        t = F.interpolate(
            t, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out[i] = t[0].round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def make_split(
    n: int,
    spec: dict[str, Any],
    predefined: dict[str, np.ndarray] | None,
) -> dict[str, np.ndarray]:
    method = spec.get("method", "predefined" if predefined is not None else "random")
    seed = spec.get("seed", 42)
    rng = np.random.default_rng(seed)
    if method == "predefined":
        if predefined is None:
            raise DatasetError(
                "dataset.split.method=predefined but this dataset has no "
                "predefined split; use random or ordered"
            )
        split = {k: np.asarray(v, np.int64) for k, v in predefined.items()}
        if "val" not in split or len(split["val"]) == 0:
            frac = spec.get("val", 0.1)
            train = rng.permutation(split["train"])
            n_val = int(round(len(train) * frac))
            split["val"], split["train"] = np.sort(train[:n_val]), np.sort(train[n_val:])
        return {k: split.get(k, np.zeros(0, np.int64)) for k in SPLITS}
    if method == "ordered":  # counts, in file order: train first, then val, then test
        counts = [int(spec.get(k, 0)) for k in SPLITS]
        if sum(counts) > n:
            raise DatasetError(
                f"dataset.split counts {dict(zip(SPLITS, counts, strict=True))} "
                f"need {sum(counts)} samples but only {n} remain"
            )
        if counts[2] and sum(counts) < n:  # test is taken from the end (e.g. last 100)
            counts[0] = n - counts[1] - counts[2] if not counts[0] else counts[0]
        edges = np.cumsum([0, counts[0], counts[1]])
        idx = np.arange(n)
        return {
            "train": idx[: edges[1]],
            "val": idx[edges[1] : edges[2]],
            "test": idx[n - counts[2] :] if counts[2] else idx[edges[2] : edges[2]],
        }
    fractions = np.array(
        [float(spec.get(k, d)) for k, d in zip(SPLITS, (0.7, 0.15, 0.15), strict=True)]
    )
    if fractions.sum() <= 0:
        raise DatasetError("dataset.split fractions must add up to more than 0")
    fractions = fractions / fractions.sum()
    perm = rng.permutation(n)
    n_train = int(round(n * fractions[0]))
    n_val = int(round(n * fractions[1]))
    return {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


def subsample(raw: RawDataset, percentage: float, seed: int) -> np.ndarray:
    """Indices kept by `data_percentage`: a seeded random subset, in file order."""
    n = len(raw.images)
    if percentage >= 100:
        return np.arange(n)
    keep = kept_samples(n, percentage)
    if keep < 1:
        raise DatasetError(f"data_percentage={percentage} keeps no sample of {n}; raise it")
    rng = np.random.default_rng([seed, 1])
    return np.sort(rng.permutation(n)[:keep])


def quality_warnings(
    images: np.ndarray,
    targets: np.ndarray,
    names: list[str],
    task: str,
) -> list[str]:
    warnings = []
    flat_std = images.reshape(len(images), -1).std(axis=1)
    for i in np.flatnonzero(flat_std < 1.0)[:20]:
        warnings.append(f"{names[i]}: near-constant image (pixel SD {flat_std[i]:.2f})")
    if task == "regression" and len(targets) > 4:
        median = np.median(targets)
        mad = np.median(np.abs(targets - median)) * 1.4826 or 1.0
        z = (targets - median) / mad
        for i in np.flatnonzero(np.abs(z) > 5)[:20]:
            warnings.append(f"{names[i]}: label outlier {targets[i]:g} (robust z {z[i]:.1f})")
    return warnings


def content_checksum(
    images: np.ndarray,
    targets: np.ndarray,
    split: dict[str, np.ndarray],
) -> str:
    digest = hashlib.sha256()
    for array in (images, targets, *(split[k] for k in SPLITS)):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def prepare(
    spec: dict[str, Any],
    location: str | Path,
    out_path: str | Path,
    manifest_path: str | Path | None = None,
) -> dict[str, Any]:
    """Read the dataset named by `spec` at `location` and write the prepared file."""
    import torch

    start = time.time()
    raw = read_dataset(spec, location)
    split_spec = dict(spec.get("split", {}))
    per_run = split_spec.get("seed") == PER_RUN
    if per_run:  # the pool and the stored split are fixed; each run redraws (run_split)
        if split_spec.get("method") == "ordered":
            raise DatasetError("dataset.split.seed: per_run needs method random or predefined")
        split_spec["seed"] = FIXED_SEED
    keep = subsample(raw, float(spec.get("data_percentage", 100)), split_spec.get("seed", 42))
    images8, scaling = to_uint8([raw.images[i] for i in keep])
    images8 = [to_channels(im, spec.get("channels")) for im in images8]
    images = resize_batch(images8, spec.get("image_size"))
    targets = raw.targets[keep]
    names = [raw.names[i] for i in keep]
    predefined = None
    if raw.predefined_split is not None:  # re-index the predefined split into `keep`
        position = {int(k): j for j, k in enumerate(keep)}
        predefined = {
            s: np.array([position[i] for i in idx if int(i) in position], np.int64)
            for s, idx in raw.predefined_split.items()
        }
    split = make_split(len(keep), split_spec, predefined)
    for part in ("train", "test"):
        if len(split[part]) == 0:
            raise DatasetError(
                f"{raw.source}: the {part} split is empty after data_percentage="
                f"{spec.get('data_percentage', 100)} ({len(keep)} samples); raise "
                "data_percentage or change dataset.split"
            )
    stats = split_statistics(images, targets, split["train"], raw.task)
    targets_out = (
        targets.astype(np.float32) if raw.task == "regression" else targets.astype(np.int64)
    )
    checksum = content_checksum(images, targets_out, split)
    manifest = {
        "format": FORMAT,
        "dataset": spec,
        "source": raw.source,
        "task": raw.task,
        "num_classes": raw.num_classes,
        "target_name": raw.target_name,
        "n_source": len(raw.images),
        "n_samples": len(keep),
        "image_shape": list(images.shape[1:]),
        "pixel_scaling": scaling,
        "split_sizes": {k: int(len(v)) for k, v in split.items()},
        "split_per_run": per_run,
        **stats,
        "content_sha256": checksum,
        "source_sha256": hashlib.sha256(json.dumps(raw.files, sort_keys=True).encode()).hexdigest(),
        "files": raw.files,
        "data_quality": raw.warnings + quality_warnings(images, targets, names, raw.task),
        "names": names,
        "seconds": round(time.time() - start, 2),
    }
    payload = {
        "format": FORMAT,
        "images": torch.from_numpy(images),
        "targets": torch.from_numpy(targets_out),
        **{f"split_{k}": torch.from_numpy(np.asarray(v, np.int64)) for k, v in split.items()},
        "manifest": json.dumps(manifest),
    }
    with atomic_path(out_path) as tmp:
        torch.save(payload, tmp)
    if manifest_path is not None:
        write_json(manifest_path, manifest)
    return manifest


def split_statistics(
    images: np.ndarray, targets: np.ndarray, train: np.ndarray, task: str
) -> dict[str, Any]:
    """Normalisation statistics of a training split: per-channel pixel mean and SD of
    x / 255, and for regression the targets' mean and SD (classification: 0 and 1)."""
    train_px = np.asarray(images[train], dtype=np.float64) / 255.0
    regression = task == "regression"
    return {
        "mean": train_px.mean(axis=(0, 2, 3)).tolist(),
        "std": (train_px.std(axis=(0, 2, 3)) + 1e-8).tolist(),
        "target_mean": float(np.asarray(targets)[train].mean()) if regression else 0.0,
        "target_std": float(np.asarray(targets)[train].std() or 1.0) if regression else 1.0,
    }


def run_split(data: dict[str, Any], seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The split one run trains on and its manifest: the prepared ones, or with
    `split: {seed: per_run}` a split drawn from the run's seed over the same pool of samples
    (a predefined test set stays; its train and validation parts are redrawn), with the
    normalisation statistics of that training split."""
    manifest, split = data["manifest"], data["split"]
    spec = dict(manifest.get("dataset", {}).get("split", {}))
    if spec.get("seed") != PER_RUN:
        return split, manifest
    rng_seed = [int(seed), 11]  # a stream of its own, apart from the seed's other draws
    if spec.get("method") == "predefined":
        pool = np.sort(np.concatenate([split["train"], split["val"]]))
        n_val = len(split["val"])
        perm = np.random.default_rng(rng_seed).permutation(pool)
        drawn = {
            "train": np.sort(perm[n_val:]),
            "val": np.sort(perm[:n_val]),
            "test": split["test"],
        }
    else:
        drawn = make_split(int(manifest["n_samples"]), {**spec, "seed": rng_seed}, None)
    images = data["images"].numpy() if hasattr(data["images"], "numpy") else data["images"]
    targets = data["targets"].numpy() if hasattr(data["targets"], "numpy") else data["targets"]
    stats = split_statistics(images, targets, drawn["train"], manifest["task"])
    return drawn, {**manifest, **stats, "split_seed": int(seed)}


def load_prepared(path: str | Path, verify: bool = True) -> dict[str, Any]:
    """Load a prepared file (memory-mapped); refuse a wrong format or a checksum mismatch."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise PreparedError(f"{path}: prepared file not found; run the prepare rule")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise PreparedError(
            f"{path}: not a readable prepared file ({err}); delete it and rerun the prepare rule"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise PreparedError(f"{path}: format {found!r} is not {FORMAT!r}; rerun prepare")
    manifest = json.loads(data["manifest"])
    split = {k: data[f"split_{k}"].numpy() for k in SPLITS}
    if verify:
        found = content_checksum(data["images"].numpy(), data["targets"].numpy(), split)
        if found != manifest["content_sha256"]:
            raise PreparedError(
                f"{path}: content checksum {found[:12]} does not match the "
                f"manifest's {manifest['content_sha256'][:12]}; the file is "
                "corrupted: delete it and rerun the prepare rule"
            )
    return {
        "images": data["images"],
        "targets": data["targets"],
        "split": split,
        "manifest": manifest,
    }
