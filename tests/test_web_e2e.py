"""End to end in a real browser: Debian's Chromium, driven by Playwright, against ``manage.py serve``
(the web app plus its embedded worker). Log in, sign a clip, download it, verify it, generate a clip,
create an API key.

Needs the ``playwright`` Python package and ``/usr/bin/chromium`` (installed with apt by CI; never a
downloaded browser). Screenshots go to ``$VERIFRAME_E2E_ARTIFACTS`` (default: the test's tmp dir).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_helpers import FAST_JOBS, ROOT, TESTS, free_port, make_instance, port_open, wait_for

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's Chromium is not installed at /usr/bin/chromium "
                       "(apt-get install chromium); the e2e test never downloads a browser"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the Python package only)")
    root = tmp_path_factory.mktemp("web-e2e")
    inst = make_instance(root, **{**FAST_JOBS, "generator_entrypoint": "pipeline_helpers:slow_generate"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]), "VF_FAKE_STEP_S": "0.05"}
    for name in ("VERIFRAME_INSTANCE", "DATABASE_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    manage = [sys.executable, str(ROOT / "manage.py"), "--instance", str(inst)]
    email, password = "e2e@example.com", "e2e browser password"
    subprocess.run([*manage, "users", "create", "--email", email], input=password + "\n", env=env, check=True,
                   capture_output=True, text=True, start_new_session=True)  # no terminal: the password from stdin
    port = free_port()
    log = open(root / "serve.log", "wb")
    proc = subprocess.Popen(["nice", "-n", "10", *manage, "serve", "--port", str(port)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, 60, "manage.py serve to listen")
        assert proc.poll() is None, (root / "serve.log").read_text()
        yield {"url": f"http://127.0.0.1:{port}", "email": email, "password": password, "root": root}
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def page(server, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        context = browser.new_context(accept_downloads=True, viewport={"width": 390, "height": 844})
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page
        context.close()
        browser.close()


def shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("VERIFRAME_E2E_ARTIFACTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_sign_download_verify_and_generate_in_a_browser(server, page, tmp_path: Path) -> None:
    from media.synthetic import make_test_clip

    out = shots(tmp_path)
    clip = make_test_clip(tmp_path / "clip.mp4", width=160, height=96, frames=8, pattern="noise")
    base = server["url"]

    page.goto(f"{base}/sign")  # creators' pages send a visitor to log in, and back afterwards
    page.wait_for_url(f"{base}/login?next=/sign")
    page.fill("#email", server["email"])
    page.fill("#password", server["password"])
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/sign")

    page.set_input_files("#file", str(clip))
    page.fill("#title", "Harbour at dawn")
    page.click("main button[type=submit]")
    page.wait_for_selector("h2#out-h")  # the job page's output heading (not the form's intro text)
    page.screenshot(path=str(out / "signed.png"), full_page=True)
    with page.expect_download() as download:
        page.click("a.button:has-text('Download')")
    signed = tmp_path / "signed.mp4"
    download.value.save_as(signed)

    page.goto(f"{base}/verify")
    page.set_input_files("#file", str(signed))
    page.click("main button[type=submit]")
    page.wait_for_selector("text=Content Credentials valid, from a trusted signer")
    assert page.is_visible("text=Harbour at dawn")
    page.screenshot(path=str(out / "verified.png"), full_page=True)

    page.goto(f"{base}/generate")
    page.fill("#prompt", "a red kite over the sea")
    page.fill("#width", "96")
    page.fill("#height", "64")
    page.fill("#steps", "3")
    page.fill("#seconds", "1")
    page.click("main button[type=submit]")
    page.wait_for_selector("h2#out-h")
    page.screenshot(path=str(out / "generated.png"), full_page=True)
    with page.expect_download() as download:
        page.click("a.button:has-text('Download')")
    assert download.value.suggested_filename.endswith(".mp4")

    page.goto(f"{base}/keys")
    page.fill("#name", "e2e script")
    page.check("input[name=scopes][value=sign]")
    page.click("main button[type=submit]")
    key = page.input_value("#new-key")
    assert key.startswith("vf_") and page.input_value("#new-secret").startswith("whsec_")
    page.screenshot(path=str(out / "keys.png"), full_page=True)
    jobs = page.request.get(f"{base}/api/v1/jobs", headers={"Authorization": f"Bearer {key}"}).json()
    assert len(jobs["items"]) == 3  # the API sees the jobs made in the portal: one owner
    page.click("button:has-text('Log out')")
    page.wait_for_url(f"{base}/verify")
