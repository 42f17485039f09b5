"""Third-party C2PA files must give the state and failure codes shared/conformance/c2pa expects.

expected.json states the trust configuration (user anchors ms-root_CA.crt + ms-CA.crt, the
allowed-EKU list, no remote fetch, no OCSP) and, per file, the state, the active manifest's
failure codes, the failure codes recorded inside its ingredients and the signer organisation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provenance.c2pa import STATES, TrustConfig, verify_file


def _conformance_dir() -> Path:
    shared = os.environ.get("VERIFRAME_SHARED")
    root = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared"
    return root / "conformance" / "c2pa"


CONFORMANCE = _conformance_dir()
EXPECTED_FILE = CONFORMANCE / "expected.json"
EXPECTED: dict[str, dict] = json.loads(EXPECTED_FILE.read_text())["files"] if EXPECTED_FILE.is_file() else {}

pytestmark = pytest.mark.skipif(
    not EXPECTED, reason=f"C2PA conformance files not found at {CONFORMANCE} (set VERIFRAME_SHARED)"
)


@pytest.fixture(scope="module")
def trust() -> TrustConfig:
    anchors = CONFORMANCE / "trust"
    return TrustConfig(
        anchor_files=(anchors / "ms-root_CA.crt", anchors / "ms-CA.crt"),
        allowed_ekus_file=anchors / "allowed-ekus.txt",
    )


def test_expected_file_lists_media() -> None:
    assert EXPECTED, "expected.json lists no files"
    for name, expectation in EXPECTED.items():
        assert (CONFORMANCE / "media" / name).is_file(), name
        assert expectation["state"] in STATES


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_conformance_file(name: str, trust: TrustConfig) -> None:
    expected = EXPECTED[name]
    report = verify_file(CONFORMANCE / "media" / name, trust)
    assert report.state == expected["state"], report.to_dict()
    if "codes" in expected:
        assert report.codes == sorted(expected["codes"])
        assert report.ingredient_codes == sorted(expected.get("ingredient_codes", []))
        assert report.signer_organization == expected.get("signer_org")
    else:
        assert report.codes == []
    # Every failure carries a plain-language explanation.
    for failure in report.failures + tuple(f for i in report.ingredients for f in i.failures):
        assert failure.explanation
    json.dumps(report.to_dict())


def test_c2pa_trust_list_loads_as_extra_anchors(trust: TrustConfig) -> None:
    """The published C2PA trust list is a usable anchor file (it does not cover the ms- test CA)."""
    trust_list = CONFORMANCE / "trust" / "C2PA-TRUST-LIST.pem"
    if not trust_list.is_file():
        pytest.skip("C2PA-TRUST-LIST.pem not present")
    report = verify_file(CONFORMANCE / "media" / "ms-cards_untrusted.jpg", trust.with_extra([trust_list]))
    assert report.state == "valid" and report.codes == ["signingCredential.untrusted"]
    assert (
        verify_file(CONFORMANCE / "media" / "ms-cards_trusted.jpg", trust.with_extra([trust_list])).state
        == "trusted"
    )
