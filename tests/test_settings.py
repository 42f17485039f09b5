"""Settings layering and the instance directory."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from settings import ConfigError, Settings, init_instance, load_settings, read_secrets


def test_defaults(tmp_path: Path) -> None:
    s = load_settings(tmp_path / "inst", env={})
    assert s.max_bytes == Settings().max_bytes and s.instance == tmp_path / "inst"


def test_file_then_env_override(tmp_path: Path) -> None:
    inst = tmp_path / "inst"
    inst.mkdir()
    (inst / "config.toml").write_text("max_frames = 100\nencode_crf = 20\nfoo = 'bar'\n")
    s = load_settings(inst, env={"VERIFRAME_ENCODE_CRF": "23"})
    assert s.max_frames == 100  # from the file
    assert s.encode_crf == 23  # the environment wins
    assert s.extra == {"foo": "bar"}
    assert s.media_limits.max_frames == 100


def test_instance_from_env(tmp_path: Path) -> None:
    s = load_settings(env={"VERIFRAME_INSTANCE": str(tmp_path / "x")})
    assert s.instance == tmp_path / "x"


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("max_frames = 'many'\n", {}),
        ("not toml [\n", {}),
        ("", {"VERIFRAME_MAX_BYTES": "-1"}),
        ("", {"VERIFRAME_ENCODE_CRF": "99"}),
        ("", {"VERIFRAME_WATERMARK_P_THRESHOLD": "2"}),
    ],
)
def test_bad_values_raise_config_error(tmp_path: Path, text: str, env: dict[str, str]) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError):
        load_settings(tmp_path, env=env)


def test_init_creates_private_files_once(tmp_path: Path) -> None:
    inst, created = init_instance(tmp_path / "inst")
    assert set(created) >= {"config.toml", "secrets.toml"}
    for name in ("config.toml", "secrets.toml"):
        assert stat.S_IMODE((inst / name).stat().st_mode) == 0o600
    before = (inst / "secrets.toml").read_text()
    _, again = init_instance(inst)
    assert again == [] and (inst / "secrets.toml").read_text() == before
    secrets = read_secrets(load_settings(inst, env={}))
    assert secrets["watermark"]["active_key_id"] == 0
