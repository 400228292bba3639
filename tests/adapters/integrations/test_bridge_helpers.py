"""The framework-free helpers the bridges share: one translation of a framework's errors, one lazy-export helper."""

from __future__ import annotations

import pytest

from ragloom._imports import lazy_exports
from ragloom.adapters.integrations._calls import ForeignErrors
from ragloom.errors import ConfigError, EndpointError


def test_foreign_errors_become_endpoint_errors_with_the_cause() -> None:
    match = r"^m failed: ValueError: boom\. Check it\.$"
    with pytest.raises(EndpointError, match=match) as caught, ForeignErrors("m failed", "Check it."):
        raise ValueError("boom")
    assert isinstance(caught.value.__cause__, ValueError)


def test_ragloom_errors_and_interrupts_pass_through() -> None:
    with pytest.raises(ConfigError), ForeignErrors("m failed", "Check it."):
        raise ConfigError("ours")
    with pytest.raises(KeyboardInterrupt), ForeignErrors("m failed", "Check it."):
        raise KeyboardInterrupt
    with ForeignErrors("m failed", "Check it."):
        pass


def test_lazy_exports_import_on_first_use() -> None:
    import sys
    import types

    package = types.ModuleType("lazy_sample")
    sys.modules["lazy_sample"] = package
    try:
        package.__getattr__, package.__dir__ = lazy_exports("lazy_sample", {"dumps": "json"}, ["dumps"])  # type: ignore[method-assign]
        import json

        assert package.dumps is json.dumps and "dumps" in vars(package)  # cached after the first use
        assert dir(package) == ["dumps"]
        with pytest.raises(AttributeError, match="has no attribute 'loads'"):
            package.loads  # noqa: B018
    finally:
        del sys.modules["lazy_sample"]
