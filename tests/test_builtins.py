"""The builtin catalogue: every name in `BUILTINS` loads from its module, forbids unknown keys, says what it does."""

from __future__ import annotations

import pytest

from functions.registry import BUILTINS, REGISTRY


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtin_is_registered_by_its_module(name):
    spec = REGISTRY.get(name)
    assert spec.name == name
    assert spec.fn.__module__ == BUILTINS[name]
    assert spec.input_model.model_config.get("extra") == "forbid"
    assert spec.description and spec.input_model.__doc__
