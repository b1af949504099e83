"""The paper's nets: shapes, init ranges, maxout, dropout masks, G's output bias."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from advnets.errors import UserError
from advnets.nets import Discriminator, Generator, Maxout

from conftest import compose_cfg


@pytest.fixture(scope="module")
def paper_nets() -> tuple[Generator, Discriminator]:
    cfg = compose_cfg(["experiment=paper_mnist"])
    torch.manual_seed(0)
    return instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)


def test_shapes_match_the_paper(paper_nets) -> None:
    G, D = paper_nets
    assert [m.weight.shape for m in G.modules() if isinstance(m, torch.nn.Linear)] == [
        (1200, 100),
        (1200, 1200),
        (784, 1200),
    ]
    assert [layer.linear.weight.shape for layer in D.layers] == [(1200, 784), (1200, 240)]
    assert D.out.weight.shape == (1, 240)
    x = G(torch.rand(7, 100))
    assert x.shape == (7, 784) and bool(((x > 0) & (x < 1)).all())
    assert D(x).shape == (7,) and D(x, D.masks(7)).shape == (7,)


def test_init_ranges(paper_nets) -> None:
    G, D = paper_nets
    for net, bound in ((G, 0.05), (D, 0.005)):
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                w = m.weight.detach()
                assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound  # uniform, fills the range
                assert abs(float(w.mean())) < bound / 10
    assert all(float(layer.linear.bias.abs().max()) == 0.0 for layer in D.layers)


def test_maxout_takes_the_max_of_each_units_pieces() -> None:
    layer = Maxout(3, units=2, pieces=4)
    x = torch.randn(5, 3)
    expected = (x @ layer.linear.weight.T + layer.linear.bias).view(5, 2, 4).max(-1).values
    assert torch.equal(layer(x), expected)


def test_dropout_masks_have_the_paper_rates_and_are_inverted(paper_nets) -> None:
    _, D = paper_nets
    masks = D.masks(4000, torch.Generator().manual_seed(1))
    assert [m.shape[1] for m in masks] == [784, 240, 240]
    for mask, keep in zip(masks, (0.8, 0.5, 0.5), strict=True):
        assert set(torch.unique(mask).tolist()) == {0.0, 1.0 / keep}
        assert abs(float((mask > 0).float().mean()) - keep) < 0.01


def test_no_masks_means_no_dropout_and_masks_apply_where_given(paper_nets) -> None:
    _, D = paper_nets
    x = torch.rand(3, 784)
    h = x
    for layer in D.layers:  # the plain maxout stack, by hand: what "no dropout" must compute
        h = (h @ layer.linear.weight.T + layer.linear.bias).view(3, layer.units, layer.pieces).amax(-1)
    expected = (h @ D.out.weight.T + D.out.bias).squeeze(-1)
    assert torch.allclose(D(x), expected, atol=1e-6)
    masks = D.masks(3, torch.Generator().manual_seed(0))
    assert not torch.allclose(D(x, masks), expected)  # dropout changes the logits
    zero_input = [torch.zeros_like(masks[0]), *masks[1:]]
    assert torch.allclose(D(x, zero_input), D(torch.zeros_like(x), zero_input))  # the input mask is applied to x


def test_output_bias_is_the_logit_of_the_mean_image() -> None:
    G = Generator(4, [8], 6, 0.05)
    mean = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0, 0.25])
    G.init_output_bias(mean)
    p = mean.clamp(1e-7, 1 - 1e-7)
    assert torch.allclose(G.out.bias, torch.log(p / (1 - p)), atol=1e-4)
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, torch.nn.Linear) and m is not G.out:
                m.weight.zero_()
        G.out.weight.zero_()
    assert torch.allclose(G(torch.zeros(1, 4))[0], p, atol=1e-6)


def test_bad_dropout_keep_is_refused() -> None:
    with pytest.raises(UserError, match=r"^model.discriminator.input_keep=1.5; allowed: 0 < keep <= 1$"):
        Discriminator(4, [2], 2, 0.1, input_keep=1.5, hidden_keep=0.5)


def test_tfd_generator_output_has_pylearn2s_sparse_init() -> None:
    from advnets.nets.mlp import Generator as MLPGenerator

    G = MLPGenerator(10, [300, 300], 50, 0.05, ["relu", "sigmoid"], [0.0, -2.0], output_sparse_init=100)
    nonzero = (G.out.weight != 0).sum(dim=1)
    assert bool((nonzero == 100).all())  # exactly 100 incoming weights per output unit, N(0, 1)
    assert 0.7 < float(G.out.weight[G.out.weight != 0].std()) < 1.3
    assert torch.equal(G.body[2].bias, torch.full((300,), -2.0))
    assert isinstance(G.body[3], torch.nn.Sigmoid) and isinstance(G.body[1], torch.nn.ReLU)


def test_cifar10_conv_nets_have_the_released_shapes() -> None:
    cfg = compose_cfg(["experiment=paper_cifar10_conv"])
    torch.manual_seed(0)
    G, D = instantiate(cfg.model.generator), instantiate(cfg.model.discriminator)
    assert G.deconv.weight.shape == (80, 3, 5, 5) and G.deconv_bias.shape == (3, 32, 32)  # untied bias
    assert D.input_shapes == [(3, 32, 32), (32, 16, 16), (32, 7, 7), (192 * 5 * 5,), (500,)]
    assert D.keeps == [0.8, 0.5, 0.5, 0.5, 0.5]
    assert [c.conv.weight.shape for c in D.convs] == [(64, 3, 8, 8), (64, 32, 8, 8), (384, 32, 5, 5)]
    x = G(torch.randn(2, 100))
    assert x.shape == (2, 3072) and D(x, D.masks(2)).shape == (2,)


@pytest.mark.parametrize("model", ["paper_mnist", "paper_tfd", "paper_cifar10_fc", "paper_cifar10_conv"])
def test_every_paper_discriminator_is_what_the_game_relies_on(model: str) -> None:
    from advnets.nets import MaskedDropoutDiscriminator

    dataset = {"paper_tfd": "tfd", "paper_mnist": "mnist"}.get(model, "cifar10")
    narrow = [] if model == "paper_cifar10_conv" else ["model.discriminator.units=[8,8]"]
    cfg = compose_cfg([f"model={model}", f"dataset={dataset}", *narrow])
    D = instantiate(cfg.model.discriminator)
    assert isinstance(D, MaskedDropoutDiscriminator)
    x = torch.rand(3, cfg.dataset.data_dim)
    a, b = D.masks(3), D.masks(2)
    joined = [None if m is None else torch.cat([m, n]) for m, n in zip(a, b, strict=True)]  # as the game joins them
    assert D(torch.cat([x, x[:2]]), joined).shape == (5,)


def test_a_sigmoid_bias_from_data_on_a_linear_output_is_one_clear_line() -> None:
    from advnets.errors import UserError

    cfg = compose_cfg(
        ["experiment=paper_cifar10_conv", "model.generator.hidden=[16,400]", "model.generator.channels=4"]
    )
    G = instantiate(cfg.model.generator)
    with pytest.raises(UserError, match="output_bias_from_data=true needs a sigmoid output"):
        G.init_output_bias(torch.rand(3072))
