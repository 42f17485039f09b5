"""Training batches: the Shapes world or a folder of captioned videos, as a pure function of the step.

Batch `b` of a run is built from `(seed, b)` alone: its size bucket, its items and its crops. So
the DataLoader may use any number of worker processes (worker w of n builds batches start+w,
start+w+n, ... and the loader interleaves them back in order), a resumed run continues with exactly
the batches it would have seen, and each rank of a multi-GPU run takes its own slice of every batch
(item `b * batch * world + rank * batch + i`).

Sources give one clip at a time at a requested size and length:

- `ShapesSource(seed)`: rendered on the fly (`generator.data.shapes`), held-out facts never drawn,
  optionally each scene beside its mirror-image direction twin, or with more of its objects moving
  left, right, up or down;
- `FolderSource(path)`: a user's own videos, captioned by a `.txt` file beside each video or by a
  `captions.csv` (`path,caption`) in the folder; each item is a random window of `frames` frames,
  resized to cover the size and centre-cropped.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import torch.utils.data

from ..errors import GeneratorError
from ..generate import fit_frame
from .shapes import DIRECTIONS, MOTIONS, Scene, binding_twin, direction_twin, render_clip, sample_scene

T = TypeVar("T")
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")


class ClipSource(Protocol):
    def item(self, index: int, width: int, height: int, frames: int, fps: float) -> tuple[np.ndarray, str]:
        """Clip `index`: uint8 (frames, height, width, 3) and its caption."""
        ...


class ShapesSource:
    """Shapes-world clips: item `index` is scene `default_rng([seed, index])` rendered at the size asked.

    With `twins`, every odd item is instead the `direction_twin` of the item before it (the mirror
    image whose caption names the opposite directions), when that twin shows no held-out fact: a
    batch of even size then holds each scene beside its twin. With `movers` p, a share p of the
    scenes (decided per item by its own draw) has every object moving left, right, up or down: a
    motion-heavy mix for teaching direction words; 0 leaves the stream as it was. With `bind` as well,
    a scene whose objects do different things gets its `binding_twin` instead (the same paths, the
    colours exchanged): pairs that differ only in which object does what.
    """

    def __init__(self, seed: int, *, allow_held_out: bool = False, twins: bool = False, movers: float = 0.0,
                 bind: bool = False) -> None:
        if not 0.0 <= movers <= 1.0:
            raise ValueError(f"movers is a share between 0 and 1, not {movers!r}")
        if bind and not twins:
            raise ValueError("bind chooses which twin an item gets: it needs twins")
        self.seed, self.allow_held_out, self.twins, self.movers = int(seed), allow_held_out, twins, float(movers)
        self.bind = bind

    def _twin(self, index: int) -> Scene | None:
        if not self.twins or index % 2 == 0:
            return None
        scene = self.scene(index - 1)
        twin = binding_twin(scene, allow_held_out=self.allow_held_out) if self.bind else None
        return twin or direction_twin(scene, allow_held_out=self.allow_held_out)

    def _drawn(self, index: int) -> tuple[Scene, np.random.Generator]:
        """Item `index`'s scene and the rng its caption is then drawn from."""
        rng = np.random.default_rng([self.seed, index])
        scene = self._twin(index)
        if scene is None:
            mover = self.movers > 0 and np.random.default_rng([self.seed, index, 1]).random() < self.movers
            scene = sample_scene(rng, allow_held_out=self.allow_held_out, motions=DIRECTIONS if mover else MOTIONS)
        return scene, rng

    def item(self, index: int, width: int, height: int, frames: int, fps: float) -> tuple[np.ndarray, str]:
        scene, rng = self._drawn(index)
        return render_clip(scene, width, height, frames, fps), scene.caption(rng)

    def scene(self, index: int) -> Scene:
        """The scene of item `index` (its captions can be re-phrased with any rng)."""
        return self._drawn(index)[0]


class DataError(GeneratorError):
    """A training data folder is missing, empty or unreadable."""


class FolderSource:
    """A user's captioned videos: `clip.mp4` + `clip.txt`, or `captions.csv` with `path,caption` rows."""

    def __init__(self, root: str | os.PathLike[str], seed: int = 0) -> None:
        self.root, self.seed = Path(root), int(seed)
        if not self.root.is_dir():
            raise DataError(f"training data folder {self.root} does not exist")
        self.entries = self._index()
        if not self.entries:
            raise DataError(f"no captioned videos in {self.root} (need clip.mp4 + clip.txt, or captions.csv)")

    def _index(self) -> list[tuple[Path, str]]:
        table = self.root / "captions.csv"
        if table.is_file():
            with table.open(newline="") as fh:
                rows = [r for r in csv.reader(fh) if r and r[0].strip() and r[0] != "path"]
            entries = []
            for row in rows:
                if len(row) < 2:
                    raise DataError(f"{table}: row {row!r} needs path,caption")
                path = (self.root / row[0]).resolve()
                if self.root.resolve() not in path.parents:
                    raise DataError(f"{table}: {row[0]!r} is outside the data folder")
                entries.append((path, row[1].strip()))
            return entries
        return [(p, p.with_suffix(".txt").read_text().strip()) for p in sorted(self.root.rglob("*"))
                if p.suffix.lower() in VIDEO_SUFFIXES and p.with_suffix(".txt").is_file()]

    def item(self, index: int, width: int, height: int, frames: int, fps: float) -> tuple[np.ndarray, str]:
        from media import iter_frames, probe

        epoch, i = divmod(index, len(self.entries))
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.entries))
        path, text = self.entries[int(order[i])]
        info = probe(path)
        step = max(1, round((info.fps or fps) / fps))  # resample towards the training rate by skipping
        span = (frames - 1) * step + 1
        total = info.frame_count or span
        start = int(np.random.default_rng([self.seed, index, 1]).integers(0, max(1, total - span + 1)))
        picked: list[np.ndarray] = []
        for n, frame in enumerate(iter_frames(path, fmt="rgb24")):
            if n >= start and (n - start) % step == 0:
                picked.append(fit_frame(frame.array, width, height))
                if len(picked) == frames:
                    break
        if not picked:
            raise DataError(f"{path} has no decodable frames")
        while len(picked) < frames:  # a short clip holds its last frame
            picked.append(picked[-1])
        return np.stack(picked), text


def _in_order(batch: Callable[[int], T], start: int) -> Iterator[T]:
    """Batches start, start+1, ... split over DataLoader workers: worker w of n builds start+w,
    start+w+n, ..., and the loader's round-robin hands them back in order."""
    info = torch.utils.data.get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    b = start + worker
    while True:
        yield batch(b)
        b += workers


@dataclass
class BatchSpec:
    """What one batch looks like; `sizes` are (width, height) buckets, one drawn per batch."""

    batch_size: int
    sizes: Sequence[Sequence[int]]
    frames: int
    fps: float
    crop: int | None = None  # square crops of this side (convolutional autoencoders train on patches)
    crop_tries: int = 1  # draw this many crops and keep the busiest (most pixel variance): small objects
    # cover a few percent of a frame, so uniform crops would teach an autoencoder mostly flat background


def _busiest_crop(clip: np.ndarray, side: int, tries: int, rng: np.random.Generator) -> np.ndarray:
    """Of `tries` random (T, side, side) crops of a (T, H, W, 3) clip, the one with the most pixel variance."""
    _, height, width, _ = clip.shape
    best, best_var = clip, -1.0
    for _ in range(max(1, tries)):
        top = int(rng.integers(0, max(1, height - side + 1)))
        left = int(rng.integers(0, max(1, width - side + 1)))
        crop = clip[:, top : top + side, left : left + side]
        var = float(crop.var()) if tries > 1 else 0.0
        if var > best_var:
            best, best_var = crop, var
    return best


class ClipBatches(torch.utils.data.IterableDataset):
    """Endless batches (uint8 (B, T, H, W, 3), captions) from `start`, the same for any worker count."""

    def __init__(self, source: ClipSource, spec: BatchSpec, seed: int, *, start: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__()
        self.source, self.spec, self.seed = source, spec, int(seed)
        self.start, self.rank, self.world_size = start, rank, world_size

    def batch(self, b: int) -> tuple[np.ndarray, list[str]]:
        spec = self.spec
        rng = np.random.default_rng([self.seed, b, 7])
        width, height = (int(v) for v in spec.sizes[int(rng.integers(len(spec.sizes)))])
        first = (b * self.world_size + self.rank) * spec.batch_size
        clips, texts = [], []
        for i in range(first, first + spec.batch_size):
            clip, text = self.source.item(i, width, height, spec.frames, spec.fps)
            if spec.crop is not None and (width > spec.crop or height > spec.crop):
                clip = _busiest_crop(clip, spec.crop, spec.crop_tries, rng)
            clips.append(clip)
            texts.append(text)
        return np.stack(clips), texts

    def __iter__(self) -> Iterator[tuple[np.ndarray, list[str]]]:
        return _in_order(self.batch, self.start)


# --------------------------------------------------------------------------------------------
# A written shard set of latents: code each clip once, train on it for many epochs


class _Picked(torch.utils.data.Dataset):
    """Batches `indices` of a ClipBatches, in that order (a map-style view for DataLoader workers)."""

    def __init__(self, data: ClipBatches, indices: Sequence[int]) -> None:
        self.data, self.indices = data, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[np.ndarray, list[str]]:
        return self.data.batch(self.indices[k])


class LatentCache(torch.utils.data.IterableDataset):
    """Batches of autoencoder latents written once to `folder` (one safetensors file per batch).

    On a CPU the autoencoder's encoder costs more than a tiny DiT's training step, so a DiT run may
    code `batches` batches of clips once (`fill`, resumable: finished files are kept) and then draw
    from them: step b reads batch file `order[b mod n]`, a permutation redrawn each epoch from
    (seed, epoch). Shapes-world files keep their scenes, so each epoch re-phrases the captions.
    """

    def __init__(self, folder: str | os.PathLike[str], batches: int, seed: int, *, start: int = 0) -> None:
        super().__init__()
        self.folder, self.batches, self.seed, self.start = Path(folder), int(batches), int(seed), start

    def path(self, i: int) -> Path:
        return self.folder / f"batch-{i:06d}.safetensors"

    def fill(self, data: ClipBatches, encode, progress: bool = False, workers: int = 0) -> None:
        """Code every batch not yet on disk (`encode`: uint8 clips -> latents); `workers` processes
        render the clips while this one codes them (on a GPU the renderer is the slow part)."""
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        todo = [i for i in range(self.batches) if not self.path(i).is_file()]
        bar = None
        if progress and todo:
            from tqdm import tqdm

            bar = tqdm(total=self.batches, initial=self.batches - len(todo), desc="coding latents")
        # clips come back as tensors, which cross from the workers in shared memory (a numpy array
        # would be pickled through a pipe: on a 16-core GPU machine that, not rendering, set the pace)
        rendered = torch.utils.data.DataLoader(_Picked(data, todo), batch_size=None, num_workers=workers,
                                               prefetch_factor=4 if workers else None)
        for i, (clips, texts) in zip(todo, rendered, strict=True):
            latents = encode(clips).detach().cpu().float().contiguous()
            meta = {"captions": json.dumps(texts)}
            if isinstance(data.source, ShapesSource):
                first = (i * data.world_size + data.rank) * data.spec.batch_size
                meta["scenes"] = json.dumps([data.source.scene(j).to_dict() for j in range(first, first + len(texts))])
            tmp = self.path(i).with_suffix(".tmp")
            save_file({"latents": latents}, str(tmp), metadata=meta)
            os.replace(tmp, self.path(i))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()

    def batch(self, b: int) -> tuple[torch.Tensor, list[str]]:
        from safetensors import safe_open

        epoch, k = divmod(b, self.batches)
        i = int(np.random.default_rng([self.seed, epoch, 11]).permutation(self.batches)[k])
        with safe_open(str(self.path(i)), framework="pt") as f:
            meta, latents = f.metadata(), f.get_tensor("latents")
        texts = json.loads(meta["captions"])
        if epoch and "scenes" in meta:  # a fresh phrasing of the same facts
            rng = np.random.default_rng([self.seed, b, 13])
            texts = [Scene.from_dict(d).caption(rng) for d in json.loads(meta["scenes"])]
        return latents, texts

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[str]]]:
        return _in_order(self.batch, self.start)
