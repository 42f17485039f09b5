"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors run fastest (and most predictably on a shared 2-core machine) on one thread: two
    OpenMP threads on a busy 2-core machine made the detector tests ~8x slower. Module-wide, so that
    module-scoped fixtures (a model trained once per module) run on one thread too."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A web app over a real pipeline (see web_helpers.make_env), one per test module."""
    from web_helpers import make_env

    web_env = make_env(tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_")))
    yield web_env
    web_env.pipeline.runtime.close()


@pytest.fixture
def client(env):
    env.pipeline.inline = False
    return env.app().test_client()
