import pytest
import torch
from torch import nn

from corruptions.rng import torch_generator
from robustbench_lift.attacks import (
    ADVERSARIAL_SUITES,
    adversarial_suite,
    default_step_size,
    eps_token,
    parse_eps,
    pgd_attack,
    suite_from_params,
)


def _model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    ).eval()


def _gens(ids, restarts=1, key="t"):
    return [[torch_generator(0, i, key, r) for i in ids] for r in range(restarts)]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_stays_in_the_ball_and_the_pixel_box(norm):
    model = _model()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 1, 8, 8, generator=g)
    y = torch.randint(0, 3, (6,), generator=g)
    eps = 0.1 if norm == "linf" else 0.5
    res = pgd_attack(model, x, y, eps=eps, norm=norm, steps=5, generators=_gens(range(6)))
    delta = (res.adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= eps + 1e-6).all())
    assert float(res.adv.min()) >= 0.0 and float(res.adv.max()) <= 1.0
    # what it calls broken is misclassified at the kept point or on the clean image
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
        adv_wrong = model(res.adv).argmax(1) != y
    assert bool((res.broken == (clean_wrong | adv_wrong)).all())


def test_pgd_raises_the_loss_and_eps_zero_is_clean():
    model = _model()
    g = torch.Generator().manual_seed(2)
    x = torch.rand(16, 1, 8, 8, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)  # all correct
    res0 = pgd_attack(model, x, y, eps=0.0, generators=_gens(range(16)))
    assert torch.equal(res0.adv, x) and not bool(res0.broken.any())
    res = pgd_attack(model, x, y, eps=0.3, steps=10, generators=_gens(range(16)))
    ce = nn.functional.cross_entropy
    with torch.no_grad():
        assert float(ce(model(res.adv), y)) > float(ce(model(x), y))
    assert int(res.broken.sum()) > 0


def test_pgd_per_image_results_do_not_depend_on_the_batch():
    model = _model()
    g = torch.Generator().manual_seed(3)
    x = torch.rand(10, 1, 8, 8, generator=g)
    y = torch.randint(0, 3, (10,), generator=g)
    ids = list(range(100, 110))
    full = pgd_attack(model, x, y, eps=0.05, steps=4, restarts=2, generators=_gens(ids, 2))
    parts = [
        pgd_attack(model, x[a:b], y[a:b], eps=0.05, steps=4, restarts=2, generators=_gens(ids[a:b], 2))
        for a, b in ((0, 3), (3, 10))
    ]
    assert torch.equal(full.broken, torch.cat([p.broken for p in parts]))
    assert torch.allclose(full.adv, torch.cat([p.adv for p in parts]), atol=1e-6)


def test_pgd_argument_checks():
    model, x, y = _model(), torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="unknown norm 'l1'; valid: linf, l2"):
        pgd_attack(model, x, y, eps=0.1, norm="l1")
    with pytest.raises(ValueError, match="eps must be >= 0"):
        pgd_attack(model, x, y, eps=-0.1)
    with pytest.raises(ValueError, match="generators"):
        pgd_attack(model, x, y, eps=0.1)


def test_eps_parsing_tokens_and_suites():
    assert parse_eps("8/255") == pytest.approx(8 / 255)
    assert parse_eps(" 0.5 ") == 0.5 and parse_eps(0) == 0.0
    for bad in ("-1", "abc", "1/0", "nan", "inf"):
        with pytest.raises(ValueError):
            parse_eps(bad)
    assert eps_token("8/255") == "eps8over255" and eps_token("0.1") == "eps0.1"
    suite = adversarial_suite("pgd-linf", "8/255,0,2/255", steps=20)
    assert suite.eps == ("0", "2/255", "8/255") and suite.steps == 20 and suite.norm == "linf"
    assert adversarial_suite("pgd-l2").eps == ("0", "0.25", "0.5")
    with pytest.raises(
        ValueError, match="unknown adversarial suite 'pgd'; valid: " + ", ".join(ADVERSARIAL_SUITES)
    ):
        adversarial_suite("pgd")
    with pytest.raises(ValueError, match="eps given twice"):
        adversarial_suite("pgd-linf", "0.1,0.1")
    back = suite_from_params("pgd-linf", suite.params())
    assert back.steps == 20 and back.step_size is None and back.restarts == 1
    assert "20 steps of 2.5*eps/steps" in suite.protocol("8/255") and "eps=8/255" in suite.protocol("8/255")
    assert default_step_size(0.1, 10) == pytest.approx(0.025)
