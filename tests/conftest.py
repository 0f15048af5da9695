import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _no_site_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's SCREENER_LOG (the site's default screening log) must not collect the
    test suite's runs, nor change what a test sees: tests that want it set it themselves."""
    monkeypatch.delenv("SCREENER_LOG", raising=False)
