"""The bundled regularizers: penalties, the max-norm projection, input dropout, and how the
objective applies them (bias row, evaluation without perturbation, dtype)."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from optlab._contract.objective import BoundLoss, BoundRegularizer, Objective
from optlab_plugins.losses import SoftmaxLoss
from optlab_plugins.regularizers import (
    L1,
    L2,
    Dropout,
    DropoutParams,
    ElasticNet,
    ElasticNetParams,
    MaxNorm,
    MaxNormParams,
    StrengthParams,
    optlab_register_regularizers,
)


@pytest.fixture
def W() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((7, 4))


def objective(
    regs: list[object], dtype: type = np.float64, seed: int = 0, has_bias: bool = True
) -> Objective:
    rng = np.random.default_rng(seed)
    X = np.hstack([rng.standard_normal((30, 6)), np.ones((30, 1))]).astype(dtype)
    y = rng.integers(0, 4, 30)
    bound = [BoundRegularizer(r, type(r).__name__) for r in regs]  # type: ignore[arg-type]
    return Objective(
        X, y, 4, BoundLoss(SoftmaxLoss(), "softmax"), bound, has_bias=has_bias, rng=rng
    )


# ------------------------------------------------------------------------------- penalties


def test_l2_penalty_and_gradient(W: np.ndarray) -> None:
    value, grad = L2(0.3).penalty_and_grad(W)
    assert value == pytest.approx(0.3 * np.sum(W**2), rel=1e-12)
    np.testing.assert_allclose(grad, 0.6 * W, rtol=1e-12)


def test_l1_penalty_and_subgradient(W: np.ndarray) -> None:
    W[0, 0] = 0.0
    value, grad = L1(0.2).penalty_and_grad(W)
    assert value == pytest.approx(0.2 * np.sum(np.abs(W)), rel=1e-12)
    np.testing.assert_allclose(grad, 0.2 * np.sign(W), rtol=1e-12)
    assert grad is not None and grad[0, 0] == 0.0


def test_elastic_net_is_l2_plus_l1(W: np.ndarray) -> None:
    value, grad = ElasticNet(l1=0.2, l2=0.3).penalty_and_grad(W)
    v1, g1 = L1(0.2).penalty_and_grad(W)
    v2, g2 = L2(0.3).penalty_and_grad(W)
    assert value == pytest.approx(v1 + v2, rel=1e-12)
    assert g1 is not None and g2 is not None
    np.testing.assert_allclose(grad, g1 + g2, rtol=1e-12)


@pytest.mark.parametrize("reg", [L2(0.1), L1(0.1), ElasticNet(0.1, 0.1)])
def test_bias_row_is_excluded_unless_include_bias(reg: L2 | L1 | ElasticNet) -> None:
    obj = objective([reg])
    W = np.random.default_rng(1).standard_normal(obj.shape)
    value, grad = obj.reg_value_and_grad(W)
    assert value == pytest.approx(reg.penalty_and_grad(W[:-1])[0], rel=1e-12)
    assert grad is not None and np.all(grad[-1] == 0)
    reg.include_bias = True
    value, grad = obj.reg_value_and_grad(W)
    assert value == pytest.approx(reg.penalty_and_grad(W)[0], rel=1e-12)
    assert grad is not None and np.any(grad[-1] != 0)


@pytest.mark.parametrize(
    "reg", [L2(0.1), L1(0.1), ElasticNet(0.1, 0.1), MaxNorm(0.5), Dropout(0.3)]
)
def test_float32_objective_stays_float32(reg: object) -> None:
    obj = objective([reg], dtype=np.float32)
    W = (0.3 * np.random.default_rng(1).standard_normal(obj.shape)).astype(np.float32)
    _, grad = obj.value_and_grad(W, np.arange(10))
    assert grad.dtype == np.float32
    obj.project(W)
    assert W.dtype == np.float32


# ------------------------------------------------------------------------------- max norm


def test_max_norm_projects_long_columns_in_place_and_keeps_short_ones() -> None:
    W = np.array([[3.0, 0.1, 0.0], [4.0, 0.2, 10.0]])  # norms 5, ~0.22, 10
    out = W  # the same object: in place
    MaxNorm(2.0).project(W)
    assert out is W
    np.testing.assert_allclose(np.linalg.norm(W, axis=0), [2.0, np.hypot(0.1, 0.2), 2.0])
    np.testing.assert_allclose(W[:, 0], [1.2, 1.6])  # direction kept
    np.testing.assert_array_equal(W[:, 1], [0.1, 0.2])


def test_max_norm_is_a_constraint_not_a_penalty() -> None:
    assert not MaxNorm.has_penalty and MaxNorm.has_projection
    obj = objective([MaxNorm(0.1)])
    W = np.random.default_rng(0).standard_normal(obj.shape)
    assert obj.value(W).reg == 0.0
    obj.project(W)
    assert np.all(np.linalg.norm(W[:-1], axis=0) <= 0.1 * (1 + 1e-12))
    assert np.any(np.abs(W[-1]) > 0.1)  # the bias row is not constrained by default


# ------------------------------------------------------------------------------- dropout


def test_dropout_is_inverted_reproducible_and_keeps_dtype() -> None:
    X = np.hstack([np.full((2000, 5), 2.0), np.ones((2000, 1))]).astype(np.float32)
    drop = Dropout(0.25)
    out = drop.perturb_inputs(X, np.random.default_rng(3))
    assert out.dtype == np.float32 and out.shape == X.shape
    expected_X = np.hstack([np.full((2000, 5), 2.0), np.ones((2000, 1))])
    np.testing.assert_array_equal(X, expected_X)  # unchanged
    features = out[:, :-1]
    assert set(np.unique(features)) == {0.0, np.float32(2.0 / 0.75)}
    assert np.mean(features == 0) == pytest.approx(0.25, abs=0.02)
    assert features.mean() == pytest.approx(2.0, rel=0.03)  # inverted: expectation kept
    in_run = objective([drop], np.float32)  # the run's bias column is kept (the objective)
    np.testing.assert_array_equal(in_run.perturbed(in_run.X)[:, -1], 1.0)
    np.testing.assert_array_equal(out, drop.perturb_inputs(X, np.random.default_rng(3)))
    assert not np.array_equal(out, drop.perturb_inputs(X, np.random.default_rng(4)))


def test_dropout_with_include_bias_also_drops_the_bias_column() -> None:
    X = np.ones((1000, 3))
    out = Dropout(0.5, include_bias=True).perturb_inputs(X, np.random.default_rng(0))
    assert np.mean(out[:, -1] == 0) == pytest.approx(0.5, abs=0.06)


@pytest.mark.parametrize(
    ("has_bias", "include_bias", "dropped"),
    [(False, False, 0.5), (True, False, 0.0), (True, True, 0.5)],
)
def test_dropout_spares_the_last_column_only_when_the_run_appended_a_bias_column(
    has_bias: bool, include_bias: bool, dropped: float
) -> None:
    """With data.bias: false a feature that is 1 in every row (the objective's helper data's
    last column) was never dropped: dropout took any all-ones last column for the bias."""
    run = objective([Dropout(0.5, include_bias=include_bias)], has_bias=has_bias)
    X = np.tile(run.X, (40, 1))  # 1,200 rows: the rate is seen to 0.05
    out = run.perturbed(X)
    assert np.mean(out[:, -1] == 0) == pytest.approx(dropped, abs=0.05)
    assert np.mean(out[:, :-1] == 0) == pytest.approx(0.5, abs=0.05)
    np.testing.assert_array_equal(X, np.tile(run.X, (40, 1)))  # X itself untouched


def test_dropouts_include_bias_says_what_it_does_to_dropout() -> None:
    """`optlab components` described dropout's include_bias as every regularizer's, 'Also
    penalize (or constrain) the bias row of W': dropout neither penalizes nor constrains W;
    the option lets it drop the inputs' bias column."""
    (record,) = [r for r in optlab_register_regularizers() if r.name == "dropout"]
    description = record.params.model_fields["include_bias"].description or ""
    assert "penalize" not in description and "bias column" in description
    assert list(record.params.model_fields) == ["include_bias", "rate"]


def test_dropout_perturbs_training_batches_but_never_evaluation() -> None:
    with_dropout = objective([Dropout(0.5)])
    without = objective([])
    W = np.random.default_rng(2).standard_normal(with_dropout.shape)
    assert with_dropout.value(W) == without.value(W)
    assert with_dropout.data_loss(W) == without.data_loss(W)
    parts, grad = with_dropout.value_and_grad(W, np.arange(30))
    plain_parts, plain_grad = without.value_and_grad(W, np.arange(30))
    assert parts.data != plain_parts.data
    assert not np.allclose(grad, plain_grad)


def test_dropout_rate_zero_is_the_identity() -> None:
    X = np.random.default_rng(0).standard_normal((5, 3))
    assert Dropout(0.0).perturb_inputs(X, np.random.default_rng(0)) is X


# ------------------------------------------------------------------------------- records


def test_records_build_components_from_params() -> None:
    records = {r.name: r for r in optlab_register_regularizers()}
    assert set(records) == {"l2", "l1", "elastic_net", "max_norm", "dropout"}
    l2 = records["l2"].factory(StrengthParams(strength=0.5, include_bias=True))
    assert isinstance(l2, L2) and l2.strength == 0.5 and l2.include_bias
    en = records["elastic_net"].factory(ElasticNetParams(l1=0.1, l2=0.2))
    assert isinstance(en, ElasticNet) and (en.l1, en.l2, en.include_bias) == (0.1, 0.2, False)
    mn = records["max_norm"].factory(MaxNormParams(c=2.0))
    assert isinstance(mn, MaxNorm) and mn.c == 2.0
    dr = records["dropout"].factory(DropoutParams(rate=0.1, include_bias=True))
    assert isinstance(dr, Dropout) and dr.rate == 0.1 and dr.include_bias


@pytest.mark.parametrize(
    ("model", "bad"),
    [
        (StrengthParams, {"strength": -1.0}),
        (ElasticNetParams, {"l1": -0.1}),
        (MaxNormParams, {"c": 0.0}),
        (DropoutParams, {"rate": 1.0}),
        (DropoutParams, {"rate": -0.1}),
        (StrengthParams, {"lambda": 0.1}),
    ],
)
def test_params_bounds(model: type[pydantic.BaseModel], bad: dict[str, float]) -> None:
    with pytest.raises(pydantic.ValidationError):
        model(**bad)
    for name, field in model.model_fields.items():
        assert field.description, f"{model.__name__}.{name} has no description"
