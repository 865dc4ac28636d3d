import pytest
import torch

from corruptions.base import Context
from corruptions.registry import Registry
from corruptions.rng import derive_seed, numpy_generator, torch_generator


def test_registry_duplicate_and_unknown():
    reg = Registry("widget")
    reg.add("a", 1, kind="x")
    reg.add("b", 2, kind="y")
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", 3)
    with pytest.raises(ValueError, match=r"unknown widget 'c'; valid: a, b"):
        reg.get("c")
    assert reg.names(kind="y") == ["b"]
    assert reg.meta("a") == {"kind": "x"}


def test_derive_seed_is_stable_and_key_sensitive():
    assert derive_seed(0, 1, "gaussian_noise", 3) == derive_seed(0, 1, "gaussian_noise", 3)
    seeds = {derive_seed(0, i, "x", 1) for i in range(1000)}
    assert len(seeds) == 1000
    assert derive_seed(0, 1) != derive_seed(1, 0)
    assert derive_seed(0, "1") != derive_seed(0, 1)
    assert 0 <= derive_seed(2**80, -5) < 2**63
    with pytest.raises(TypeError):
        derive_seed(0, object())


def test_generators_do_not_touch_global_state():
    torch.manual_seed(7)
    before = torch.get_rng_state().clone()
    a = torch.rand(4, generator=torch_generator(3, "k"))
    b = torch.rand(4, generator=torch_generator(3, "k"))
    torch.testing.assert_close(a, b)
    assert torch.equal(before, torch.get_rng_state())
    assert numpy_generator(3, "k").random() == numpy_generator(3, "k").random()


def test_context_draws_depend_only_on_own_seed():
    ctx_all = Context(seeds=[11, 22, 33], native_size=32, suite="t")
    ctx_one = Context(seeds=[22], native_size=32, suite="t")
    torch.testing.assert_close(ctx_all.randn(2, 5)[1], ctx_one.randn(2, 5)[0])
    assert ctx_all.rand(3).shape == (3, 3)
    assert ctx_all.scale(64, 48) == 1.5
