"""The command line end to end: exit codes, one-line errors, watermark round trip."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from media.synthetic import make_test_clip

ROOT = Path(__file__).resolve().parents[1]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VERIFRAME_INSTANCE": str(tmp_path / "instance")}
    env.pop("VERIFRAME_DEBUG", None)
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)


def commands() -> list[list[str]]:
    import manage

    out: list[list[str]] = [[]]

    def walk(group, prefix: list[str]) -> None:
        for name, cmd in group.commands.items():
            out.append(prefix + [name])
            if hasattr(cmd, "commands"):
                walk(cmd, prefix + [name])

    walk(manage.cli, [])
    return out


@pytest.mark.parametrize("cmd", commands(), ids=lambda c: " ".join(c) or "root")
def test_help_on_every_command(tmp_path: Path, cmd: list[str]) -> None:
    r = run(tmp_path, *cmd, "--help")
    assert r.returncode == 0 and "Usage" in r.stdout


def test_init_creates_instance_with_private_files(tmp_path: Path) -> None:
    r = run(tmp_path, "init")
    assert r.returncode == 0, r.stderr
    inst = tmp_path / "instance"
    assert stat.S_IMODE((inst / "secrets.toml").stat().st_mode) == 0o600
    assert stat.S_IMODE((inst / "config.toml").stat().st_mode) == 0o600


def test_watermark_round_trip_keeps_audio_and_rotation_key(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    make_test_clip(src, width=256, height=144, frames=12, fps=24, audio=True, pattern="noise")
    r = run(tmp_path, "watermark", "embed", str(src), str(tmp_path / "out.mp4"), "--payload", "00112233445566ff")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "instance" / "secrets.toml").exists()  # created on first use
    r = run(tmp_path, "watermark", "detect", str(tmp_path / "out.mp4"), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert {"present", "payload", "confidence", "p_value", "bit_errors", "frames_used"} <= result.keys()
    assert result["present"] is True and result["payload"] == "00112233445566ff"
    from media import probe

    assert probe(tmp_path / "out.mp4").has_audio
    # after a key rotation the old mark is still found, and the unmarked source is not
    assert run(tmp_path, "watermark", "rotate-key").returncode == 0
    again = json.loads(run(tmp_path, "watermark", "detect", str(tmp_path / "out.mp4"), "--json").stdout)
    assert again["present"] and again["key_id"] == 0
    plain = json.loads(run(tmp_path, "watermark", "detect", str(src), "--json").stdout)
    assert plain["present"] is False and plain["payload"] is None


@pytest.mark.parametrize(
    ("make", "args"),
    [
        (lambda p: p.write_bytes(b""), ["watermark", "detect"]),
        (lambda p: p.write_text("hello, I am not a video\n" * 10), ["watermark", "detect"]),
        (lambda p: p.write_bytes(b""), ["watermark", "embed", "--payload", "0011223344556677"]),
        (None, ["watermark", "detect"]),  # missing file
        (lambda p: p.write_bytes(b"x"), ["watermark", "embed", "--payload", "nothex"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path: Path, make, args: list[str]) -> None:
    bad = tmp_path / "bad.mp4"
    if make is not None:
        make(bad)
    cmd = [args[0], args[1], str(bad)]
    if args[1] == "embed":
        cmd.append(str(tmp_path / "out.mp4"))
    r = run(tmp_path, *cmd, *args[2:])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "out.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_unknown_option_is_exit_2_one_line(tmp_path: Path) -> None:
    r = run(tmp_path, "watermark", "detect", "--nope")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
