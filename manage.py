#!/usr/bin/env python3
"""veriframe's command line: one Click group, ``python manage.py --help``.

Exit codes: 0 success, 2 bad input (one line on stderr), 1 internal error.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from pathlib import Path

import click

from pipeline.cli import COMMANDS as _PIPELINE_COMMANDS
from pipeline.cli import generation_options

EXIT_BAD_INPUT = 2


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean 'bad input': reported in one line with exit code 2."""
    from media.errors import MediaError
    from provenance.watermark import KeyringError, PayloadError
    from settings import ConfigError

    errors: list[type[BaseException]] = [MediaError, ConfigError, PayloadError, KeyringError]
    try:
        from generator.errors import GeneratorError

        errors.append(GeneratorError)
    except ImportError:  # pragma: no cover - torch missing
        pass
    try:
        from provenance.c2pa.errors import ProvenanceError

        errors.append(ProvenanceError)
    except ImportError:  # pragma: no cover - c2pa wrapper not installed
        pass
    return tuple(errors)


def _settings(ctx: click.Context):
    """The settings of this invocation; the instance directory is created on first use."""
    from settings import init_instance, load_settings

    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        settings = load_settings(obj.get("instance"))
        init_instance(settings.instance)
        obj["settings"] = settings
    return obj["settings"]


def _migrated(ctx: click.Context):
    """The settings, with the instance's database at the newest schema (the manifest store's table
    comes from the migrations, like every other)."""
    from pipeline import Pipeline

    settings = _settings(ctx)
    pipeline = Pipeline(settings)
    try:
        pipeline.migrate()
    finally:
        pipeline.runtime.close()
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--instance", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Instance directory (default ./instance or $VERIFRAME_INSTANCE).")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
@click.pass_context
def cli(ctx: click.Context, instance: Path | None, verbose: bool) -> None:
    """veriframe: provenance, invisible watermarks and AI-video detection."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    ctx.ensure_object(dict)["instance"] = instance


@cli.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the instance directory with its config and secrets (0600); idempotent."""
    from settings import init_instance, load_settings

    settings = load_settings(ctx.obj.get("instance"))
    inst, created = init_instance(settings.instance)
    click.echo(f"instance {inst.resolve()}: " + (f"created {', '.join(created)}" if created else "already complete"))


@cli.group()
def watermark() -> None:
    """Embed and detect the invisible keyed watermark."""


@watermark.command("embed")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--payload", required=True, help="64-bit payload as 16 hex digits.")
@click.option("--crf", type=click.IntRange(0, 51), default=None,
              help="H.264 CRF of the output (default from config).")
@click.option("--preset", default=None, help="x264 preset of the output (default from config).")
@click.pass_context
def watermark_embed(ctx: click.Context, src: Path, dst: Path, payload: str, crf: int | None,
                    preset: str | None) -> None:
    """Copy SRC to DST (MP4, or PNG/JPEG for a still) with the watermark embedded."""
    from provenance.watermark import parse_payload_hex
    from provenance.watermark.video import embed_for_instance

    settings = _settings(ctx)
    data = parse_payload_hex(payload)
    if not src.is_file():
        raise click.BadParameter(f"{src}: no such file", param_hint="SRC")
    embed_for_instance(settings, src, dst, data, crf=crf, preset=preset)
    click.echo(f"wrote {dst}")


@watermark.command("detect")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@click.option("--frames", type=click.IntRange(1, 10000), default=None, help="Frames to sample (default from config).")
@click.pass_context
def watermark_detect(ctx: click.Context, src: Path, as_json: bool, frames: int | None) -> None:
    """Look for the watermark in SRC with every key of the instance's keyring."""
    from provenance.watermark.video import detect_for_instance

    settings = _settings(ctx)
    if not src.is_file():
        raise click.BadParameter(f"{src}: no such file", param_hint="SRC")
    result = detect_for_instance(settings, src, frames=frames)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif result.present:
        click.echo(f"present: payload {result.payload} (key {result.key_id}), p-value {result.p_value:.3g}, "
                   f"{result.bit_errors} coded-bit errors, {result.frames_used} frames")
    else:
        click.echo(f"absent: p-value {result.p_value:.3g} over {result.frames_used} frames")


@watermark.command("rotate-key")
@click.pass_context
def watermark_rotate_key(ctx: click.Context) -> None:
    """Add a new watermark key and make it active; old keys stay accepted for detection."""
    from settings import write_private

    settings = _settings(ctx)
    from provenance.watermark.video import keyring_from_settings

    ring = keyring_from_settings(settings).rotated(secrets.token_bytes(32))
    write_private(settings.secrets_path, ring.to_toml())
    click.echo(f"active watermark key id is now {ring.active_id} ({len(ring.keys)} keys accepted)")


@cli.group()
def keys() -> None:
    """Manage the signing identity."""


@keys.command("import")
@click.option("--chain", "chain", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM chain: signing certificate first, then intermediates.")
@click.option("--key", "key", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM private key of the signing certificate.")
@click.pass_context
def keys_import(ctx: click.Context, chain: Path, key: Path) -> None:
    """Install a real signing certificate and key (replaces the development identity)."""
    from provenance.c2pa import import_identity

    info = import_identity(_settings(ctx).instance, chain, key)
    click.echo(f"installed {info.alg} signer {info.common_name!r} ({info.organization}), valid until {info.not_after}")


@keys.command("show")
@click.pass_context
def keys_show(ctx: click.Context) -> None:
    """Describe the installed signing identity (never the key)."""
    from provenance.c2pa import load_identity_info

    click.echo(json.dumps(load_identity_info(_settings(ctx).instance).to_dict(), indent=2, default=str))


@cli.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--source", type=click.Choice(["generated", "capture", "edit"]), default="capture", show_default=True,
              help="How the clip was made (sets the C2PA action and digital source type).")
@click.option("--title", default=None, help="Title recorded in the manifest (default: file name).")
@click.option("--author", default=None, help="Author recorded in the manifest.")
@click.option("--include-prompt", is_flag=True, help="Record the prompt text, not only its hash.")
@click.option("--no-watermark", is_flag=True, help="Sign without embedding the watermark first.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--async", "run_async", is_flag=True,
              help="Queue it as a job for the workers and print the job id (fetch with `jobs show`).")
@click.pass_context
def sign(ctx: click.Context, src: Path, dst: Path, source: str, title: str | None, author: str | None,
         include_prompt: bool, no_watermark: bool, as_json: bool, run_async: bool) -> None:
    """Watermark SRC and sign it with Content Credentials into DST (MP4, MOV, JPEG, PNG)."""
    from provenance.credentials import issue_credentials

    settings = _migrated(ctx)
    if not src.is_file():
        raise click.BadParameter(f"{src}: no such file", param_hint="SRC")
    if run_async:
        from pipeline.cli import submit_and_follow

        submit_and_follow(ctx, lambda p: p.submit_sign(src, source=source, title=title, author=author,
                                                       watermark=not no_watermark),
                          wait=False, as_json=as_json)
        return
    issued = issue_credentials(settings, src, dst, source=source, title=title, author=author,
                               include_prompt=include_prompt, watermark=not no_watermark)
    if as_json:
        click.echo(json.dumps(issued.to_dict(), indent=2))
    else:
        click.echo(f"wrote {dst} (manifest {issued.manifest_label}"
                   + (f", watermark payload {issued.payload_hex})" if issued.payload_hex else ")"))


@cli.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--trust-anchors", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Extra trust-anchor PEM file for this call (repeatable).")
@click.option("--allowed-ekus", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="File of allowed extended-key-usage OIDs for this call.")
@click.option("--async", "run_async", is_flag=True,
              help="Queue it as a job for the workers and print the job id (fetch with `jobs show`).")
@click.pass_context
def verify(ctx: click.Context, src: Path, as_json: bool, trust_anchors: tuple[Path, ...],
           allowed_ekus: Path | None, run_async: bool) -> None:
    """Report SRC's Content Credentials, watermark and file facts."""
    from provenance.credentials import verify_clip

    settings = _migrated(ctx)
    if not src.is_file():
        raise click.BadParameter(f"{src}: no such file", param_hint="SRC")
    if run_async:
        if trust_anchors or allowed_ekus:
            raise click.BadParameter("--async uses the instance's trust configuration", param_hint="--trust-anchors")
        from pipeline.cli import submit_and_follow

        submit_and_follow(ctx, lambda p: p.submit_verify(src, filename=src.name), wait=False, as_json=as_json)
        return
    report = verify_clip(settings, src, extra_anchors=trust_anchors, allowed_ekus=allowed_ekus)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    c2pa, mark = report["c2pa"], report["watermark"]
    recovered = " (recovered through the watermark)" if c2pa.get("recovered") else ""
    click.echo(f"content credentials: {c2pa['state']}{recovered}")
    if c2pa.get("message"):
        click.echo(f"  {c2pa['message']}")
    for failure in c2pa.get("failures", []):
        click.echo(f"  {failure['code']}: {failure['explanation']}")
    click.echo("watermark: " + (f"present, payload {mark['payload']} (p-value {mark['p_value']:.3g})"
                                if mark["present"] else f"absent (p-value {mark['p_value']:.3g})"))


@cli.command()
@click.argument("prompt")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output MP4 (required with --local; with a queued job, where to download it).")
@generation_options
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="First frame (image-to-video).")
@click.option("--extend", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Clip to continue.")
@click.option("--config", default=None, help="Model size preset (tiny, S, B, L, XL).")
@click.option("--checkpoint", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Checkpoint folder (default: weights/generator-<config>).")
@click.option("--local", is_flag=True, help="Generate in this process instead of queueing a job for the workers.")
@click.option("--no-wait", is_flag=True, help="Queue the job, print its id and return at once.")
@click.option("--raw", is_flag=True, help="With --local: write the raw clip, no watermark or Content Credentials.")
@click.pass_context
def generate(ctx: click.Context, prompt: str, output: Path | None, include_prompt: bool, local: bool, no_wait: bool,
             raw: bool, **options) -> None:
    """Generate a clip -> watermark -> sign: as a job on the workers (followed with a progress bar), or --local."""
    import tempfile

    from tqdm import tqdm

    settings = _settings(ctx)
    if not prompt.strip():
        raise click.BadParameter("the prompt is empty", param_hint="PROMPT")
    if not local:
        local_only = [name for name in ("image", "extend", "config", "checkpoint") if options[name] is not None]
        if local_only or raw:
            flags = ", ".join("--" + n for n in local_only + (["raw"] if raw else []))
            raise click.BadParameter(f"{flags} need --local (jobs take the workers' model)", param_hint="--local")
        from pipeline.cli import submit_and_follow

        queued = {k: v for k, v in options.items() if k not in ("image", "extend", "config", "checkpoint")}
        submit_and_follow(ctx, lambda p: p.submit_generate(prompt, include_prompt=include_prompt, **queued),
                          wait=not no_wait, download=output)
        return
    if output is None:
        raise click.BadParameter("--local needs -o OUTPUT", param_hint="-o")
    from generator.cli import generate_to_file
    if options["seed"] is None:
        options["seed"] = secrets.randbelow(2**31)
    output.parent.mkdir(parents=True, exist_ok=True)
    bars: list[tqdm] = []  # made at the first step, so an early error stays one line
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".veriframe-") as tmp:

        def progress(done: int, total: int) -> None:
            if not bars:
                bars.append(tqdm(desc="sampling", unit="step", total=total, leave=False))
            bars[0].n = done
            bars[0].refresh()

        target = output if raw else Path(tmp) / "generated.mp4"
        generate_to_file(prompt, target, progress=progress, **options)
        if not raw:
            from provenance.credentials import issue_credentials

            generation = {"prompt": prompt, "seed": options["seed"], "steps": options["steps"],
                          "model_id": options["config"] or "default"}
            _migrated(ctx)  # the manifest store's table
            issued = issue_credentials(settings, target, output, source="generated", title=prompt[:80],
                                       generation=generation, include_prompt=include_prompt)
            click.echo(f"wrote {output} (seed {options['seed']}, manifest {issued.manifest_label}, "
                       f"watermark payload {issued.payload_hex})")
            return
    click.echo(f"wrote {output} (seed {options['seed']}, raw: no watermark or credentials)")


@cli.group()
def train() -> None:
    """Train veriframe's models on your own data."""


@train.command("detector")
@click.option("--data", "data", required=True, type=click.Path(exists=True, path_type=Path),
              help="Folder with a kit.csv or real/ and ai/ media, or a CSV file of path,label[,source,split] "
                   "(paths relative to it).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (detector.safetensors, last.safetensors for --resume).")
@click.option("--model", default=None, help="Backbone preset (see detector.DETECTOR_MODELS).")
@click.option("--steps", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--held-out", multiple=True, help="Source family never trained on (repeatable).")
@click.option("--target-fpr", type=click.FloatRange(0.0001, 0.5), default=0.01, show_default=True)
@click.option("--batch-size", type=click.IntRange(2), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(1e-6, 1.0), default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model-id", default=None, help="Name stored in the checkpoint (default: backbone and steps).")
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads.")
@click.option("--max-minutes", type=click.FloatRange(0.1), default=None, help="Stop cleanly after this long.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.safetensors.")
@click.option("--init", "init", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Start from a trained detector.safetensors (same model, or a residual one for mnv3s-050-2b).")
@click.option("--freeze-residual", is_flag=True,
              help="With --init into mnv3s-050-2b: keep the residual branch as loaded, train the RGB one.")
def train_detector_cmd(data: Path, out: Path, model: str | None, steps: int, held_out: tuple[str, ...],
                       target_fpr: float, batch_size: int, lr: float, seed: int, model_id: str | None,
                       threads: int | None, max_minutes: float | None, resume: bool, init: Path | None,
                       freeze_residual: bool) -> None:
    """Train the AI-origin detector (augmented, class-balanced, calibrated on held-out reals)."""
    from detector import DETECTOR_MODELS, train_detector

    if model is not None and model not in DETECTOR_MODELS:
        raise click.BadParameter(f"choose one of {', '.join(DETECTOR_MODELS)}", param_hint="--model")
    kwargs = {"config": model} if model else {}
    try:
        summary = train_detector(data, out, steps=steps, held_out=held_out, target_fpr=target_fpr,
                                 batch_size=batch_size, lr=lr, seed=seed, model_id=model_id, threads=threads,
                                 max_minutes=max_minutes, resume=resume, init=init,
                                 freeze_residual=freeze_residual, **kwargs)
    except ValueError as exc:  # unusable data: the message says what is missing
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(summary, indent=2, default=str))


@train.command("detector-ensemble")
@click.option("--data", "data", required=True, type=click.Path(exists=True, path_type=Path),
              help="The kit (folder or CSV file) whose val split calibrates the ensemble.")
@click.option("--member", "members", required=True, multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A trained detector.safetensors (repeat: two or more, same backbone and input).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The ensemble's detector.safetensors.")
@click.option("--model-id", required=True, help="Name stored in the checkpoint.")
@click.option("--target-fpr", type=click.FloatRange(0.0001, 0.5), default=0.01, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None, help="torch CPU threads.")
def train_detector_ensemble_cmd(data: Path, members: tuple[Path, ...], out: Path, model_id: str, target_fpr: float,
                                threads: int | None) -> None:
    """Join trained frame models into one ensemble (mean of calibrated logits), calibrated on val."""
    import torch

    from detector import build_ensemble

    if threads is not None:
        torch.set_num_threads(threads)
    try:
        summary = build_ensemble(list(members), data, out, model_id=model_id, target_fpr=target_fpr)
    except ValueError as exc:  # a member that does not fit, or data without a val split
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(summary, indent=2, default=str))


@train.command("detector-clips")
@click.option("--data", "data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The data kit folder with its clip kit (bench/out/detector/kit; `train temporal-head` builds it).")
@click.option("--weights", "weights", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The frame model's checkpoint (weights/detector/detector.safetensors).")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the recalibrated checkpoint (default: WEIGHTS, in place).")
@click.option("--model-id", default=None, help="Model id to write (default: the checkpoint's).")
def train_detector_clips_cmd(data: Path, weights: Path, out: Path | None, model_id: str | None) -> None:
    """Set the frame model's clip thresholds (by compression) on the clip kit's val real clips; weights kept."""
    from detector.train import calibrate_on_clips

    try:
        summary = calibrate_on_clips(weights, data, model_id=model_id, out=out)
    except (ValueError, OSError) as exc:  # no clip kit, a foreign checkpoint (CheckpointError), missing data
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(summary, indent=2, default=str))


@train.command("temporal-head")
@click.option("--data", "data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The data kit folder (bench/out/detector/kit); its clips/ subfolder is built here when "
                   "missing.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file (temporal.safetensors).")
@click.option("--hidden", type=click.IntRange(0), default=8, show_default=True,
              help="Hidden units (0: logistic regression).")
@click.option("--weight-decay", type=click.FloatRange(0.0), default=1e-3, show_default=True)
@click.option("--target-fpr", type=click.FloatRange(0.0001, 0.5), default=0.01, show_default=True)
@click.option("--dit-clips", type=click.IntRange(3), default=144, show_default=True,
              help="DiT clips sampled for a new clip kit.")
@click.option("--extra-scenes", type=click.IntRange(0), default=None,
              help="Rendered-only Shapes scenes for a new clip kit [default: detector.clipkit.EXTRA_SCENES, 720].")
@click.option("--camera-pans", type=click.IntRange(0), default=None,
              help="Simulated camera pans per bundled photo for a new clip kit [default: detector.clipkit.CAMERA_PANS, "
                   "8].")
@click.option("--seed", type=int, default=0, show_default=True, help="The fit's seed (and a new kit's).")
@click.option("--rebuild", is_flag=True, help="Build the clip kit again even if DATA/clips exists.")
@click.option("--recalibrate", is_flag=True,
              help="Keep the head already in OUT (its weights) and only set its thresholds and temperature again "
                   "on this clip kit's val clips.")
@click.option("--model-id", default=None, help="Model id to write (default: a new fit's, or OUT's with --recalibrate).")
def train_temporal_cmd(data: Path, out: Path, hidden: int, weight_decay: float, target_fpr: float, dit_clips: int,
                       extra_scenes: int | None, camera_pans: int | None, seed: int, rebuild: bool, recalibrate: bool,
                       model_id: str | None) -> None:
    """Fit the detector's temporal head on whole clips (issued and laundered), calibrated on real clips."""
    from detector.clipkit import CAMERA_PANS, EXTRA_SCENES, KIT_DIR_NAME, build_clip_kit, read_clip_kit
    from detector.train_temporal import MODEL_ID, recalibrate_temporal_head, train_temporal_head

    extra_scenes = EXTRA_SCENES if extra_scenes is None else extra_scenes
    camera_pans = CAMERA_PANS if camera_pans is None else camera_pans
    try:
        if rebuild or not (data / KIT_DIR_NAME / "features.npz").is_file():
            click.echo(f"building the clip kit in {data / KIT_DIR_NAME} (about 15 minutes on 2 cores)", err=True)
            build_clip_kit(data, dit_clips=dit_clips, extra_scenes=extra_scenes, camera_pans=camera_pans, seed=seed,
                           progress=True)
        else:
            built = read_clip_kit(data).info
            asked = {"dit_clips": dit_clips, "extra_scenes": extra_scenes, "camera_pans": camera_pans}
            if any(k in built and built[k] != v for k, v in asked.items()):
                click.echo(f"warning: using the existing clip kit ({', '.join(f'{k} {built.get(k)}' for k in asked)});"
                           " --rebuild to build one with the options given", err=True)
        if recalibrate:
            summary = recalibrate_temporal_head(data, out, model_id=model_id, target_fpr=target_fpr)
        else:
            summary = train_temporal_head(data, out, hidden=hidden, weight_decay=weight_decay, target_fpr=target_fpr,
                                          seed=seed, model_id=model_id or MODEL_ID)
    except (ValueError, OSError) as exc:  # unusable kit or head (TemporalHeadError), missing bundled data
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(summary, indent=2, default=str))


def _generator_train_command(kind: str, default_config: str):  # -> click.Command
    @train.command(kind)
    @click.option("--config", "config", default=default_config, show_default=True,
                  help="A named recipe (generator.train.CONFIGS) or a .json/.toml file.")
    @click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
                  help="Run folder: state, log, loss.png, samples/, and the exported model.")
    @click.option("--resume", is_flag=True, help="Continue the run in OUT exactly where its last checkpoint left it.")
    @click.option("--steps", type=click.IntRange(1), default=None,
                  help="Total steps of the run (overrides the config).")
    @click.option("--data", default=None,
                  help="'shapes' or a folder of captioned videos (clip.mp4 + clip.txt, or captions.csv).")
    @click.option("--autoencoder", "autoencoder", default=None, type=click.Path(exists=True, dir_okay=False),
                  help="dit only: the trained autoencoder.safetensors.")
    @click.option("--workers", type=click.IntRange(0), default=None, help="DataLoader processes building batches.")
    @click.option("--set", "sets", multiple=True, metavar="KEY=JSON", help="Override any config field (repeatable).")
    @click.option("--max-minutes", type=click.FloatRange(0.1), default=None,
                  help="Checkpoint and stop after this long (resume later with --resume).")
    @click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available).")
    @click.option("--export", "export_now", is_flag=True,
                  help="With --resume: write the model from the last checkpoint (EMA weights) now, without training.")
    def command(config: str, out: Path, resume: bool, steps: int | None, data: str | None, autoencoder: str | None,
                workers: int | None, sets: tuple[str, ...], max_minutes: float | None, device: str | None,
                export_now: bool) -> None:
        from generator.train import TrainError, load_config
        from generator.train import train as run_training

        overrides: dict = {}
        for item in sets:
            key, sep, value = item.partition("=")
            if not sep:
                raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
            try:
                overrides[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                overrides[key.strip()] = value
        for key, value in (("steps", steps), ("data", data), ("autoencoder", autoencoder), ("workers", workers)):
            if value is not None:
                overrides[key] = str(Path(value).resolve()) if key == "autoencoder" else value
        if resume and config == default_config:  # continue the run as it was configured
            from generator.train import TrainConfig, saved_config

            cfg, base = TrainConfig.from_dict({**saved_config(out), **overrides}), None
        else:
            cfg, base = load_config(config, overrides)
        if cfg.kind != kind:
            raise TrainError(f"config {config!r} trains a {cfg.kind}, not a {kind}")
        result = run_training(cfg, out, resume=resume, base=base, device=device, max_minutes=max_minutes,
                              export_now=export_now)
        click.echo(str(result))

    command.__doc__ = f"Train the generator's {kind} (Shapes world by default, or your own captioned videos)."
    return command


train_autoencoder_cmd = _generator_train_command("autoencoder", "shapes-ae")
train_dit_cmd = _generator_train_command("dit", "shapes-dit-tiny")


@cli.group("eval")
def evaluate() -> None:
    """Evaluate veriframe's models."""


@evaluate.command("detector")
@click.option("--data", "data", required=True, type=click.Path(exists=True, path_type=Path),
              help="Labelled folder, kit folder or CSV file (uses its test split when it has one).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=Path("weights/detector/detector.safetensors"), show_default=True)
def eval_detector_cmd(data: Path, checkpoint: Path) -> None:
    """AUC, AP, accuracy and TPR at the operating threshold, per source, before/after re-encode and resize."""
    from detector import evaluate_detector

    try:
        click.echo(json.dumps(evaluate_detector(data, checkpoint), indent=2, default=str))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _step_counts(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or any(not 1 <= c <= 1000 for c in counts):
        raise click.BadParameter(f"{value!r} is not a comma-separated list of step counts in 1..1000")
    return counts


@evaluate.command("generator")
@click.option("--checkpoint", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Generator bundle folder (default: the shipped weights/generator-tiny).")
@click.option("--seeds", type=click.IntRange(1, 100), default=None,
              help="Seeds per prompt [default: 3; 1 with --quick].")
@click.option("--steps", type=click.IntRange(1, 1000), default=None,
              help="Sampling steps [default: the model's, 16 for tiny].")
@click.option("--steps-curve", default="4,8,16,32,50", show_default=True, callback=_step_counts,
              help="Step counts of the quality-versus-steps curve.")
@click.option("--prompts-per-group", type=click.IntRange(1), default=None,
              help="Prompts of each group (seen / held-out x 1 / 2 objects) [default: 3; 1 with --quick].")
@click.option("--curve-prompts", type=click.IntRange(1), default=None,
              help="Prompts in the steps curve [default: 4; 1 with --quick].")
@click.option("--ae-clips", type=click.IntRange(1, 1000), default=None,
              help="Held-out clips for the autoencoder PSNR [default: 8; 2 with --quick].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Markdown report; the contact sheet goes beside it as .png "
                   "[default: docs/benchmarks/generator-quality.md].")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Raw results [default: bench/out/generator-quality.json].")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available).")
@click.option("--quick", is_flag=True, help="A smoke run of a couple of minutes: one prompt per group, one seed.")
def eval_generator_cmd(checkpoint: Path | None, seeds: int | None, steps: int | None, steps_curve: tuple[int, ...],
                       prompts_per_group: int | None, curve_prompts: int | None, ae_clips: int | None,
                       out: Path | None, json_out: Path | None, device: str | None, quick: bool) -> None:
    """Prompt adherence, stability, autoencoder PSNR, Frechet distance and the steps curve of a generator."""
    import torch
    from tqdm import tqdm

    from generator.evaluate import DEFAULT_JSON, DEFAULT_REPORT, EvalOptions, evaluate_generator

    sizes = {"seeds": seeds, "steps": steps, "steps_curve": steps_curve, "prompts_per_group": prompts_per_group,
             "curve_prompts": curve_prompts, "ae_clips": ae_clips}
    options = EvalOptions.quick(**sizes) if quick else EvalOptions(**{k: v for k, v in sizes.items() if v is not None})
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    command = " ".join(["manage.py eval generator", *([f"--checkpoint {checkpoint}"] if checkpoint else []),
                        f"--seeds {options.seeds}", f"--steps-curve {','.join(map(str, steps_curve))}",
                        f"--prompts-per-group {options.prompts_per_group}", f"--curve-prompts {options.curve_prompts}",
                        f"--ae-clips {options.ae_clips}", *([f"--steps {steps}"] if steps else []),
                        *(["--quick"] if quick else [])])
    bars: list[tqdm] = []  # made at the first clip, so an early error stays one line

    def progress(done: int, total: int, what: str) -> None:
        if not bars:
            bars.append(tqdm(desc="evaluating", unit="clip", total=total, leave=False))
        bars[0].set_postfix_str(what, refresh=False)
        bars[0].update(done - bars[0].n)

    results = evaluate_generator(checkpoint, options, report=out or DEFAULT_REPORT, json_path=json_out or DEFAULT_JSON,
                                 device=device, command=command, progress=progress)
    for bar in bars:
        bar.close()
    for target in results["targets"]:
        verdict = {None: "not measured", True: "met", False: "MISSED"}[target["met"]]
        click.echo(f"{target['target']}: {target['measured']} ({verdict})")
    click.echo(f"wrote {out or DEFAULT_REPORT} in {results['wall_seconds'] / 60:.1f} min")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True, help="TCP port.")
@click.option("--no-worker", is_flag=True, help="Do not start the embedded worker (workers run elsewhere).")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, no_worker: bool) -> None:
    """Run the web portal and API plus one worker process (development server, embedded default)."""
    settings = _settings(ctx)
    os.environ["VERIFRAME_INSTANCE"] = str(settings.instance)
    from pipeline.cli import serve_with_worker
    from web import create_app

    serve_with_worker(settings, lambda: create_app().run(host=host, port=port), worker=not no_worker)


def _database(ctx: click.Context):  # -> sqlalchemy.Engine
    """The instance's database engine, migrated (the keys and users tables come from the migrations)."""
    from pipeline import Pipeline

    pipeline = Pipeline(_settings(ctx))
    pipeline.migrate()
    return pipeline.runtime.engine


def _key_store(ctx: click.Context):  # -> web.apikeys.KeyStore
    from web.apikeys import KeyStore

    return KeyStore(_database(ctx))


@cli.group("apikeys")
def apikeys() -> None:
    """API keys for the web API and portal (stored hashed; a key is shown once, when created)."""


@apikeys.command("create")
@click.option("--name", required=True, help="What the key is for (shown in lists).")
@click.option("--scopes", default="verify", show_default=True, help="Comma-separated: verify, generate, sign.")
@click.option("--owner", default=None, help="Owner of the key's jobs (default: the key itself); keys that share "
              "an owner see the same jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print the key, its webhook secret and its record as JSON.")
@click.pass_context
def apikeys_create(ctx: click.Context, name: str, scopes: str, owner: str | None, as_json: bool) -> None:
    """Create a key and print it, with its webhook secret on stderr (neither can be shown again)."""
    from web.apikeys import ApiKeyError

    try:
        info, key, webhook_secret = _key_store(ctx).create(name, scopes, owner=owner)
    except ApiKeyError as exc:
        raise click.BadParameter(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"key": key, "webhook_secret": webhook_secret, **info.to_dict()}, indent=2))
        return
    click.echo(key)
    click.echo(f"id {info.id}, scopes {','.join(info.scopes)}, owner {info.owner}\n"
               f"webhook secret {webhook_secret} (signs the webhooks of this key's jobs; see docs/webhooks.md)\n"
               "store the key and the secret now: neither is shown again", err=True)


@apikeys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def apikeys_list(ctx: click.Context, as_json: bool) -> None:
    """List keys (never the keys themselves: their id, prefix, scopes and state)."""
    keys = _key_store(ctx).list()
    if as_json:
        click.echo(json.dumps([k.to_dict() for k in keys], indent=2))
        return
    for k in keys:
        state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
        click.echo(f"{k.id}  {k.prefix}…  {','.join(k.scopes):22}  {state:18}  {k.name}")


@apikeys.command("revoke")
@click.argument("key_id")
@click.pass_context
def apikeys_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke a key by its id or listed prefix; requests with it fail from now on."""
    try:
        info = _key_store(ctx).revoke(key_id)
    except LookupError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(f"revoked {info.id} ({info.name})")


def _user_store(ctx: click.Context):  # -> web.users.UserStore
    from web.users import UserStore

    return UserStore(_database(ctx))


@cli.group("users")
def users() -> None:
    """Portal accounts (creators log in to sign, generate and manage their API keys)."""


@users.command("create")
@click.option("--email", required=True, help="The account's email (its login).")
@click.pass_context
def users_create(ctx: click.Context, email: str) -> None:
    """Create an account. The password is asked twice, hidden; when stdin is not a terminal its
    first line is the password (``printf '%s\\n' "$PW" | manage.py users create --email E``)."""
    from web.users import AccountError

    password = _read_new_password()
    try:
        user = _user_store(ctx).create(email, password)
    except AccountError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(f"created user {user.email} (id {user.id})")


def _read_new_password() -> str:
    """Asked twice, hidden, on a terminal; otherwise the first line of stdin (never an argument,
    which would show in the process list and the shell's history)."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\r\n")


@users.command("set-password")
@click.option("--email", required=True, help="The account's email.")
@click.pass_context
def users_set_password(ctx: click.Context, email: str) -> None:
    """Set a new password for an account (a reset: the old one is not needed) and end its portal
    sessions. Read like `users create` reads one: hidden prompt, or a pipe's first line."""
    from web.users import AccountError

    password = _read_new_password()
    try:
        user = _user_store(ctx).set_password(email, password)
    except (AccountError, LookupError) as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(f"set a new password for {user.email}; its portal sessions have ended")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def users_list(ctx: click.Context, as_json: bool) -> None:
    """List accounts: id, email, created, state (never a password hash)."""
    accounts = _user_store(ctx).list()
    if as_json:
        click.echo(json.dumps([u.to_dict() for u in accounts], indent=2))
        return
    for u in accounts:
        click.echo(f"{u.id}  {u.created_at:%Y-%m-%d}  {'disabled' if u.disabled else 'active':8}  {u.email}")


def _set_disabled(ctx: click.Context, email: str, disabled: bool) -> None:
    try:
        user = _user_store(ctx).set_disabled(email, disabled)
    except LookupError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(f"{'disabled' if user.disabled else 'enabled'} {user.email}")


@users.command("disable")
@click.argument("email")
@click.pass_context
def users_disable(ctx: click.Context, email: str) -> None:
    """Disable an account: its sessions end and its API keys are refused (until `users enable`)."""
    _set_disabled(ctx, email, True)


@users.command("enable")
@click.argument("email")
@click.pass_context
def users_enable(ctx: click.Context, email: str) -> None:
    """Enable a disabled account again (its API keys work again too)."""
    _set_disabled(ctx, email, False)


# The pipeline's commands: worker, jobs list|show|cancel|verify|sign|generate|requeue, db upgrade|current.

for _command in _PIPELINE_COMMANDS:
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; map bad input to one stderr line and exit code 2."""
    try:
        cli.main(args=argv, prog_name="manage.py", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("error: aborted", err=True)
        return 1
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return EXIT_BAD_INPUT
    except _user_errors() as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_BAD_INPUT
    except Exception as exc:  # an internal bug: say so in one line, details with VERIFRAME_DEBUG=1
        if os.environ.get("VERIFRAME_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (set VERIFRAME_DEBUG=1 for details)", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
