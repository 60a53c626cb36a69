"""Session-wide fixtures: one private cache dir (datasets, features) for the whole run.

Every test and every subprocess it starts sees DPC_NAS_CACHE pointing there, so the
suite never touches the user's ~/.cache and the tiny `test` dataset is built once.
"""
import os
import shutil
import tempfile

import pytest

_CACHE = None


def pytest_configure(config):
    global _CACHE
    if "DPC_NAS_CACHE" not in os.environ:
        _CACHE = tempfile.mkdtemp(prefix="dpc-nas-test-cache-")
        os.environ["DPC_NAS_CACHE"] = _CACHE


def pytest_unconfigure(config):
    if _CACHE:
        shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def cache_dir():
    return os.environ["DPC_NAS_CACHE"]


@pytest.fixture(scope="session")
def test_evaluator(cache_dir):
    """A prepared ProxyEvaluator on the `test` config, shared by the session."""
    from proxy.evaluator import ProxyEvaluator

    return ProxyEvaluator("test", cache_dir=cache_dir, device="cpu").prepare()
