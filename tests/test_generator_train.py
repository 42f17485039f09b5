"""The generator trainer: exact resume, data sources, the command line end to end, multi-process DDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from generator.data import COLOURS, HELD_OUT, binding_twin
from generator.data.batches import BatchSpec, ClipBatches, DataError, FolderSource, LatentCache, ShapesSource
from generator.train import STATE_FILE, TrainError, load_config, train
from media.synthetic import make_test_clip

ROOT = Path(__file__).resolve().parents[1]


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict


def _manage(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VERIFRAME_INSTANCE": str(tmp_path / "instance"), "OMP_NUM_THREADS": "1"}
    env.pop("VERIFRAME_DEBUG", None)
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_autoencoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("ae")
    cfg, _ = load_config("smoke-ae", {"steps": 2, "sample_every": 100})
    return train(cfg, out, progress=False)


@pytest.mark.parametrize(("kind", "cache"), [("smoke-ae", 0), ("smoke-dit", 0), ("smoke-dit", 3)])
def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path: Path, kind: str, cache: int,
                                                          smoke_autoencoder: Path, one_torch_thread: None) -> None:
    overrides = {"steps": 4, "checkpoint_every": 2, "sample_every": 100, "latent_cache": cache}
    if kind == "smoke-dit":
        overrides["autoencoder"] = str(smoke_autoencoder)
    cfg, _ = load_config(kind, overrides)
    train(cfg, tmp_path / "straight", progress=False)
    train(cfg, tmp_path / "split", progress=False, stop_after=2)
    assert _tensors(tmp_path / "split" / STATE_FILE).keys() == _tensors(tmp_path / "straight" / STATE_FILE).keys()
    train(cfg, tmp_path / "split", progress=False, resume=True)
    a, b = _tensors(tmp_path / "straight" / STATE_FILE), _tensors(tmp_path / "split" / STATE_FILE)
    assert a.keys() == b.keys() and any(k.startswith("opt.") for k in a) and any(k.startswith("ema.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The log of the resumed run has each step once, in order.
    steps = [json.loads(r)["step"] for r in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    # ...and differs from a run with another seed (the comparison above can fail).
    other, _ = load_config(kind, {**overrides, "seed": 1})
    train(other, tmp_path / "other", progress=False)
    c = _tensors(tmp_path / "other" / STATE_FILE)
    assert not torch.equal(a["model." + next(k[6:] for k in a if k.startswith("model."))],
                           c["model." + next(k[6:] for k in c if k.startswith("model."))])


def test_batches_are_the_same_for_any_worker_count() -> None:
    spec = BatchSpec(batch_size=2, sizes=[[32, 32], [48, 16]], frames=3, fps=8)
    ds = ClipBatches(ShapesSource(5), spec, seed=5, start=3)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    got = [b for _, b in zip(range(4), loader, strict=False)]
    for n, (clips, texts) in enumerate(got):
        ref_clips, ref_texts = ds.batch(3 + n)
        assert np.array_equal(clips.numpy() if torch.is_tensor(clips) else clips, ref_clips)
        assert list(texts) == ref_texts
    sizes = {ds.batch(b)[0].shape[2:4] for b in range(12)}
    assert sizes == {(32, 32), (16, 48)}  # (H, W): both buckets drawn


def test_twins_put_each_scene_beside_its_mirror_image_in_one_batch() -> None:
    plain, twins = ShapesSource(6), ShapesSource(6, twins=True)
    spec = BatchSpec(batch_size=4, sizes=[[32, 32]], frames=3, fps=8)
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}
    paired = 0
    for i in range(0, 24, 2):
        assert twins.scene(i) == plain.scene(i)  # even items are the plain stream's
        first, second = twins.scene(i), twins.scene(i + 1)
        mirrored = [opposite.get(o.motion, o.motion) for o in first.objects] == [o.motion for o in second.objects]
        if mirrored and (first.background, [o.colour for o in first.objects]) == \
                (second.background, [o.colour for o in second.objects]):
            paired += 1
            assert first != second
    assert paired >= 10  # all but a twin that would show a held-out fact
    clips, texts = ClipBatches(twins, spec, seed=6).batch(1)
    assert clips.shape[0] == 4 and texts[1] != texts[0]
    # Training sees the twins only when asked to.
    assert not load_config("smoke-dit")[0].twins and load_config("smoke-dit", {"twins": True})[0].twins


def test_bind_gives_scenes_whose_objects_differ_a_binding_twin_and_the_rest_a_mirror_twin() -> None:
    twins, bound = ShapesSource(6, twins=True), ShapesSource(6, twins=True, bind=True)
    kinds = {"binding": 0, "mirror": 0}
    for i in range(0, 60, 2):
        first, second = bound.scene(i), bound.scene(i + 1)
        assert first == twins.scene(i)  # even items are the plain stream's
        if second == binding_twin(first):
            kinds["binding"] += 1
            assert len({o.motion for o in first.objects}) >= 2
        elif second == twins.scene(i + 1):
            kinds["mirror"] += 1
    assert kinds["binding"] >= 5 and kinds["mirror"] >= 10 and sum(kinds.values()) >= 28
    assert load_config("smoke-dit", {"twins": True, "bind": True})[0].bind
    with pytest.raises(TrainError):
        load_config("smoke-dit", {"bind": True})  # bind without twins has nothing to choose
    with pytest.raises(ValueError):
        ShapesSource(6, bind=True)


def test_movers_share_sets_how_many_scenes_move_by_direction_and_leaves_the_plain_stream_alone() -> None:
    def directional(scene) -> bool:
        return all(o.motion in ("left", "right", "up", "down") for o in scene.objects)

    plain, none, heavy, all_ = (ShapesSource(4), ShapesSource(4, movers=0.0), ShapesSource(4, movers=0.5),
                                ShapesSource(4, movers=1.0))
    scenes = range(200)
    assert all(none.scene(i) == plain.scene(i) for i in scenes)
    assert all(directional(all_.scene(i)) and set(all_.scene(i).facts).isdisjoint(HELD_OUT) for i in scenes)
    shares = [sum(directional(src.scene(i)) for i in scenes) / 200 for src in (plain, heavy)]
    assert shares[0] < 0.3 and 0.5 < shares[1] < 0.75  # 0.5 forced plus the plain stream's own movers
    # An item's caption follows its scene, and twins still mirror a mover.
    clip, text = all_.item(3, 32, 32, 3, 8.0)
    assert clip.shape == (3, 32, 32, 3) and all_.scene(3).objects[0].colour in text
    twins = ShapesSource(4, movers=1.0, twins=True)
    assert directional(twins.scene(1)) and twins.scene(1) != twins.scene(0)
    with pytest.raises(ValueError):
        ShapesSource(4, movers=1.5)
    with pytest.raises(TrainError):
        load_config("smoke-dit", {"movers": -0.1})


def test_latent_cache_visits_every_batch_once_per_epoch_and_rephrases_captions(tmp_path: Path) -> None:
    spec = BatchSpec(batch_size=2, sizes=[[32, 32]], frames=3, fps=8)
    data = ClipBatches(ShapesSource(3), spec, seed=3)
    cache = LatentCache(tmp_path / "latents", 3, seed=3)
    cache.fill(data, lambda clips: torch.as_tensor(np.asarray(clips), dtype=torch.float32).mean(dim=(1, 4)))
    assert sorted(p.name for p in (tmp_path / "latents").iterdir()) == [f"batch-00000{i}.safetensors" for i in range(3)]
    first = [cache.batch(b) for b in range(3)]
    second = [cache.batch(b) for b in range(3, 6)]
    key = lambda z: round(float(z.sum()), 3)  # noqa: E731
    assert sorted(key(z) for z, _ in first) == sorted(key(z) for z, _ in second)  # same files, new order
    originals = {key(z): t for z, t in first}
    rephrased = {key(z): t for z, t in second}
    assert any(originals[k] != rephrased[k] for k in originals)  # new phrasings of the same scenes...
    for k in originals:  # ...naming the same colours
        for a, b in zip(originals[k], rephrased[k], strict=True):
            assert {w for w in a.split() if w in COLOURS} == {w for w in b.split() if w in COLOURS}
    mtime = (tmp_path / "latents" / "batch-000000.safetensors").stat().st_mtime_ns
    cache.fill(data, lambda clips: pytest.fail("a filled cache is not coded again"))
    assert (tmp_path / "latents" / "batch-000000.safetensors").stat().st_mtime_ns == mtime


def test_latent_cache_coded_with_rendering_workers_matches_one_process(tmp_path: Path) -> None:
    """Worker processes only render: the files (latents, captions, scenes) are those of a one-process fill."""
    from safetensors import safe_open

    spec = BatchSpec(batch_size=2, sizes=[[32, 32], [48, 16]], frames=3, fps=8)
    data = ClipBatches(ShapesSource(5, twins=True), spec, seed=5)
    encode = lambda clips: torch.as_tensor(np.asarray(clips), dtype=torch.float32).mean(dim=4)  # noqa: E731
    LatentCache(tmp_path / "one", 5, seed=5).fill(data, encode)
    LatentCache(tmp_path / "many", 5, seed=5).fill(data, encode, workers=2)
    for i in range(5):
        name = f"batch-{i:06d}.safetensors"
        with safe_open(str(tmp_path / "one" / name), "pt") as a, safe_open(str(tmp_path / "many" / name), "pt") as b:
            assert a.metadata() == b.metadata()
            assert torch.equal(a.get_tensor("latents"), b.get_tensor("latents"))


def test_folder_source_reads_captioned_videos(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    make_test_clip(data / "a.mp4", width=80, height=60, frames=20, fps=24, pattern="moving")
    (data / "a.txt").write_text("colour bars\n")
    make_test_clip(data / "b.mp4", width=64, height=64, frames=6, fps=8, pattern="noise")
    (data / "b.txt").write_text("noise")
    (data / "uncaptioned.mp4").write_bytes((data / "a.mp4").read_bytes())
    source = FolderSource(data, seed=0)
    assert sorted(t for _, t in source.entries) == ["colour bars", "noise"]
    texts = set()
    for i in range(4):
        clip, text = source.item(i, 32, 48, 5, 8.0)
        assert clip.shape == (5, 48, 32, 3) and clip.dtype == np.uint8
        texts.add(text)
    assert texts == {"colour bars", "noise"}
    (data / "captions.csv").write_text("path,caption\nb.mp4,static\n")
    assert FolderSource(data).entries[0][1] == "static"
    (data / "captions.csv").write_text("../../etc/passwd,x\n")
    with pytest.raises(DataError, match="outside"):
        FolderSource(data)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no captioned videos"):
        FolderSource(tmp_path / "empty")


def test_busiest_crops_hold_more_detail_and_keep_the_batch_deterministic() -> None:
    uniform = ClipBatches(ShapesSource(0), BatchSpec(8, [[128, 128]], 3, 8.0, crop=32), seed=0)
    busiest = ClipBatches(ShapesSource(0), BatchSpec(8, [[128, 128]], 3, 8.0, crop=32, crop_tries=4), seed=0)
    u = [busiest.batch(b)[0] for b in range(3)]
    assert all(np.array_equal(a, busiest.batch(b)[0]) for b, a in enumerate(u))
    assert u[0].shape == (8, 3, 32, 32, 3)
    var = lambda ds: np.mean([c.var() for b in range(3) for c in ds.batch(b)[0]])  # noqa: E731
    assert var(busiest) > 1.5 * var(uniform)


@pytest.mark.parametrize("recon_loss", ["l1", "mse", "l1+mse"])
def test_autoencoder_reconstruction_losses(recon_loss: str) -> None:
    import random

    from generator.train import _ae_loss, _build

    cfg, _ = load_config("smoke-ae", {"recon_loss": recon_loss})
    model, _, _ = _build(cfg, None, torch.device("cpu"))
    video = torch.rand(2, 3, 5, 32, 32) * 2 - 1
    loss, stats = _ae_loss(model, video, cfg, torch.Generator().manual_seed(0), random.Random(0), [])
    stats = {k: float(v) for k, v in stats.items()}  # tensors until a logging step reads them
    want = {"l1": stats["l1"], "mse": stats["mse"], "l1+mse": stats["l1"] + stats["mse"]}[recon_loss]
    assert loss.item() == pytest.approx(want + cfg.kl_weight * stats["kl"], rel=1e-5)


def test_a_diverging_run_stops_before_it_saves(tmp_path: Path) -> None:
    """The loss is read back only on logging and saving steps (a read waits for the GPU), yet a run
    whose loss goes non-finite between them still stops with a clear error before any checkpoint."""
    cfg, _ = load_config("smoke-ae", {"lr": 1e30, "warmup": 1, "steps": 8, "log_every": 3, "checkpoint_every": 6,
                                      "sample_every": 100})
    with pytest.raises(TrainError, match="loss is (nan|inf)"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / STATE_FILE).exists()


def test_bad_runs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="unknown training config"):
        load_config("no-such-recipe")
    with pytest.raises(TrainError, match="unknown training config keys"):
        load_config("smoke-ae", {"learning_rate": 1})
    with pytest.raises(TrainError, match="recon_loss"):
        load_config("smoke-ae", {"recon_loss": "huber"})
    cfg, _ = load_config("smoke-dit", {"autoencoder": str(tmp_path / "missing.safetensors")})
    with pytest.raises(TrainError, match="does not exist"):
        train(cfg, tmp_path / "dit", progress=False)
    with pytest.raises(TrainError, match="nothing to resume"):
        train(load_config("smoke-ae")[0], tmp_path / "fresh", resume=True, progress=False)


@pytest.mark.slow
def test_train_both_stages_and_generate_from_the_command_line(tmp_path: Path) -> None:
    r = _manage(tmp_path, "train", "autoencoder", "--config", "smoke-ae", "--out", "ae", "--steps", "2")
    assert r.returncode == 0, r.stderr
    ae = tmp_path / "ae" / "autoencoder.safetensors"
    assert ae.is_file() and (tmp_path / "ae" / "loss.png").is_file()
    assert list((tmp_path / "ae" / "samples").glob("*.png"))
    again = _manage(tmp_path, "train", "autoencoder", "--config", "smoke-ae", "--out", "ae")
    assert again.returncode == 2 and "--resume" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    # A later session continues the run as it was configured (no --config), to a larger --steps.
    r = _manage(tmp_path, "train", "autoencoder", "--out", "ae", "--resume", "--steps", "3")
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["step"] for x in (tmp_path / "ae" / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    before = ae.stat().st_mtime_ns
    r = _manage(tmp_path, "train", "autoencoder", "--out", "ae", "--resume", "--export")
    assert r.returncode == 0 and ae.stat().st_mtime_ns != before, r.stderr
    r = _manage(tmp_path, "train", "autoencoder", "--out", "ae", "--export")
    assert r.returncode == 2 and "--resume" in r.stderr
    wrong = _manage(tmp_path, "train", "dit", "--config", "smoke-ae", "--out", "x")
    assert wrong.returncode == 2 and "not a dit" in wrong.stderr
    r = _manage(tmp_path, "train", "dit", "--config", "smoke-dit", "--out", "gen", "--autoencoder", str(ae),
                "--set", "steps=3", "--max-minutes", "30")
    assert r.returncode == 0, r.stderr
    bundle = json.loads((tmp_path / "gen" / "model.json").read_text())
    assert bundle["text_encoder"] == "hash" and bundle["training"]["config"]["steps"] == 3
    r = _manage(tmp_path, "generate", "a red circle moving right", "--local", "--checkpoint", "gen",
                "--output", "clip.mp4", "--seconds", "0.5", "--width", "32", "--height", "32", "--steps", "2")
    assert r.returncode == 0, r.stderr
    from media import probe

    info = probe(tmp_path / "clip.mp4")
    assert (info.width, info.height) == (32, 32) and info.frame_count == 4


@pytest.mark.slow
def test_distributed_data_parallel_with_torchrun(tmp_path: Path) -> None:
    """Two CPU processes (gloo) train one model; rank 0 alone writes the state and the export."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this interpreter")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VERIFRAME_INSTANCE": str(tmp_path / "instance")}
    r = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", str(ROOT / "manage.py"), "train",
                        "autoencoder", "--config", "smoke-ae", "--out", str(tmp_path / "ddp"), "--steps", "2",
                        "--max-minutes", "30"],  # the deadline is agreed between the ranks each step
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    state = _tensors(tmp_path / "ddp" / STATE_FILE)
    with safe_open(str(tmp_path / "ddp" / STATE_FILE), framework="pt") as f:
        assert json.loads(f.metadata()["extra"])["world_size"] == 2
    assert (tmp_path / "ddp" / "autoencoder.safetensors").is_file() and state
    rows = [json.loads(r) for r in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]  # one writer


_FSDP_RUN = """
import sys
import generator.train as T

def spy(model):  # report how much of the model this rank holds after sharding
    T_shard(model)
    local = sum(p.to_local().numel() for p in model.parameters())
    print(f"rank holds {local} of {sum(p.numel() for p in model.parameters())}", flush=True)

T_shard, T._shard = T._shard, spy
out, stop, resume, parallel, ae = sys.argv[1:]
cfg, _ = T.load_config("smoke-dit", {"parallel": parallel, "latent_cache": 0, "steps": 4, "checkpoint_every": 2,
                                     "sample_every": 4, "autoencoder": ae})
T.train(cfg, out, progress=False, stop_after=int(stop) or None, resume=resume == "1")
"""


@pytest.mark.slow
def test_fsdp_shards_the_dit_and_resumes_exactly(tmp_path: Path, smoke_autoencoder: Path) -> None:
    """Two CPU processes shard the DiT with FSDP2; a split run ends with the weights of a straight one,
    and the state file is the same full-tensor format (resumable without FSDP)."""
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this interpreter")
    script = tmp_path / "run.py"
    script.write_text(_FSDP_RUN)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

    def run(out: str, stop: int = 0, resume: bool = False, parallel: str = "fsdp", ranks: int = 2) -> str:
        r = subprocess.run([torchrun, "--standalone", "--nproc-per-node", str(ranks), str(script), str(tmp_path / out),
                            str(stop), "1" if resume else "0", parallel, str(smoke_autoencoder)],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout

    held = [line.split() for line in run("straight").splitlines() if line.startswith("rank holds")]
    assert len(held) == 4  # model and EMA on each of the two ranks
    assert all(0 < int(h[2]) < int(h[4]) for h in held)  # each rank holds part of the parameters
    assert (tmp_path / "straight" / "dit.safetensors").is_file() and (tmp_path / "straight" / "samples").is_dir()
    run("split", stop=2)
    run("split", resume=True)
    a, b = _tensors(tmp_path / "straight" / STATE_FILE), _tensors(tmp_path / "split" / STATE_FILE)
    assert a.keys() == b.keys() and any(k.startswith("opt.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The same format as a one-process run's, and one process (no FSDP) continues a sharded run.
    cfg, _ = load_config("smoke-dit", {"latent_cache": 0, "steps": 4, "checkpoint_every": 2, "sample_every": 100,
                                       "autoencoder": str(smoke_autoencoder), "parallel": "fsdp"})
    train(cfg, tmp_path / "single", progress=False)
    assert _tensors(tmp_path / "single" / STATE_FILE).keys() == a.keys()
    run("half", stop=2)
    train(cfg, tmp_path / "half", progress=False, resume=True)
    c = _tensors(tmp_path / "half" / STATE_FILE)
    assert c.keys() == a.keys() and all(torch.isfinite(v.float()).all() for v in c.values())
    assert (tmp_path / "half" / "dit.safetensors").is_file()


def test_fsdp_is_the_default_for_large_presets_under_torchrun() -> None:
    from generator.train import _sharded

    large, _ = load_config("shapes-dit-tiny", {"model": {"preset": "XL"}})
    small, _ = load_config("shapes-dit-tiny")
    assert _sharded(large, 8) and not _sharded(large, 1) and not _sharded(small, 8)
    assert _sharded(load_config("shapes-dit-tiny", {"parallel": "fsdp"})[0], 2)
    assert not _sharded(load_config("shapes-dit-tiny", {"model": {"preset": "L"}, "parallel": "ddp"})[0], 8)
    with pytest.raises(TrainError, match="parallel"):
        load_config("shapes-dit-tiny", {"parallel": "zero3"})


def test_a_new_stage_starts_from_exported_weights(tmp_path: Path, smoke_autoencoder: Path) -> None:
    from generator.checkpoint import load_component
    from generator.train import _build, _init_from

    cfg, _ = load_config("smoke-ae", {"init": str(smoke_autoencoder), "steps": 1, "sample_every": 100})
    model, _, _ = _build(cfg, None, torch.device("cpu"))
    _init_from(model, smoke_autoencoder, "autoencoder")
    trained = load_component(smoke_autoencoder, "autoencoder")
    pairs = zip(model.state_dict().values(), trained.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    other, _ = load_config("smoke-ae", {"model": {**cfg.model, "latent_channels": 2}})
    wrong, _, _ = _build(other, None, torch.device("cpu"))
    with pytest.raises(TrainError, match="different autoencoder"):
        _init_from(wrong, smoke_autoencoder, "autoencoder")
    train(cfg, tmp_path / "stage2", progress=False)  # and a run with init trains from there
    assert (tmp_path / "stage2" / "autoencoder.safetensors").is_file()


def test_a_decoder_grows_extra_blocks_from_exported_weights_and_trains_them(tmp_path: Path,
                                                                             smoke_autoencoder: Path,
                                                                             one_torch_thread: None) -> None:
    from generator.checkpoint import load_component
    from generator.train import _build, _init_from

    before = load_component(smoke_autoencoder, "autoencoder")
    cfg, _ = load_config("smoke-ae", {"init": str(smoke_autoencoder), "train_part": "decoder", "steps": 3,
                                      "frames": 9, "lr": 1e-2, "sample_every": 100,
                                      "model": {**before.config.to_dict(), "decoder_extra_blocks": 1,
                                                "scaling_factor": 1.0, "shift_factor": 0.0}})
    grown, _, _ = _build(cfg, None, torch.device("cpu"))
    _init_from(grown, smoke_autoencoder, "autoencoder")
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():  # the new blocks start as the identity: the same decoder as before
        z = before.encode(x).mean
        torch.testing.assert_close(grown.eval().decode(z, frames=9), before.decode(z, frames=9))
    after = load_component(train(cfg, tmp_path / "grown", progress=False), "autoencoder")
    assert after.config.decoder_extra_blocks == 1
    extra = {k: v for k, v in after.state_dict().items() if k.startswith("decoder.extra.")}
    assert extra and any(v.abs().sum() > 0 for k, v in extra.items() if ".conv2." in k)  # and they learned
    old = before.state_dict()
    assert all(torch.equal(old[k], after.state_dict()[k]) for k in old if k.startswith("encoder."))
    # a grown decoder does not load back into the smaller one, nor another network into it
    with pytest.raises(TrainError, match="different autoencoder"):
        _init_from(before, tmp_path / "grown" / "autoencoder.safetensors", "autoencoder")


def test_decoder_only_training_keeps_the_encoder_and_its_latent_normalisation(tmp_path: Path,
                                                                              smoke_autoencoder: Path,
                                                                              one_torch_thread: None) -> None:
    from generator.checkpoint import load_component

    with pytest.raises(TrainError, match="set 'init'"):
        load_config("smoke-ae", {"train_part": "decoder"})
    with pytest.raises(TrainError, match="train_part"):
        load_config("smoke-dit", {"train_part": "decoder", "autoencoder": str(smoke_autoencoder)})
    cfg, _ = load_config("smoke-ae", {"init": str(smoke_autoencoder), "train_part": "decoder", "steps": 3,
                                      "frames": 9, "lr": 1e-2, "sample_every": 100})
    before = load_component(smoke_autoencoder, "autoencoder")
    after = load_component(train(cfg, tmp_path / "decoder", progress=False), "autoencoder")
    old, new = before.state_dict(), after.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith("encoder."))
    assert not all(torch.equal(old[k], new[k]) for k in old if k.startswith("decoder."))
    assert (after.config.shift_factor, after.config.scaling_factor) == \
        (before.config.shift_factor, before.config.scaling_factor)
    # A run that trains everything moves the encoder too (the comparison above can fail).
    both, _ = load_config("smoke-ae", {**cfg.to_dict(), "train_part": "all"})
    moved = load_component(train(both, tmp_path / "all", progress=False), "autoencoder").state_dict()
    assert not all(torch.equal(old[k], moved[k]) for k in old if k.startswith("encoder."))
