"""The model family: an additive logistic model over binned inputs, with a missing slot.

Each of the 15 inputs falls into one slot: one of up to 12 value bins (edges at quantiles of
the training values, finer in the tails), or its own "not observed" slot. The model is a
logistic regression on the one-hot slots (L2-penalised), so

    log_odds = intercept + sum over inputs of table[input, slot(input)]

and each input's contribution is exactly its term: the contributions add up to the log-odds
with nothing left over. Each input's terms are centred on the training cohort (its mean
term is moved into the intercept), so a contribution says how much that input raises or
lowers this patient's log-odds compared with its average term. A missing input gets the weight
that the data gave missingness, never the weight of a normal value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from cdsflow.training.model_inputs import N_INPUTS

Floats = npt.NDArray[np.float32]
Bools = npt.NDArray[np.bool_]

# where the value-bin edges sit, as quantiles of the observed training values
EDGE_QUANTILES = (0.01, 0.03, 0.07, 0.15, 0.3, 0.5, 0.7, 0.85, 0.93, 0.97, 0.99)
N_EDGES = len(EDGE_QUANTILES)
N_SLOTS = N_EDGES + 2  # value bins 0..N_EDGES, then the "not observed" slot
MISSING_SLOT = N_EDGES + 1


@dataclass(frozen=True)
class AdditiveRiskModel:
    edges: Floats  # [15, N_EDGES] ascending per input, padded with +inf
    table: Floats  # [15, N_SLOTS] log-odds term per slot, centred on the training cohort
    intercept: float  # log-odds when every contribution is 0
    l2_inverse_strength: float  # the C that was chosen

    def slots(self, features: Floats, present: Bools) -> npt.NDArray[np.int64]:
        """Each input's slot, [rows, 15]; NaN counts as not observed."""
        values = np.asarray(features, dtype=np.float32)
        observed = np.asarray(present, dtype=bool) & ~np.isnan(values)
        bins = (values[:, :, None] >= self.edges[None, :, :]).sum(axis=2)
        slots: npt.NDArray[np.int64] = np.where(observed, bins, MISSING_SLOT).astype(np.int64)
        return slots

    def contributions(self, features: Floats, present: Bools) -> Floats:
        """Each input's log-odds term, [rows, 15]."""
        slots = self.slots(features, present)
        terms: Floats = self.table[np.arange(N_INPUTS)[None, :], slots]
        return terms

    def log_odds(self, features: Floats, present: Bools) -> npt.NDArray[np.float64]:
        terms = self.contributions(features, present).astype(np.float64)
        result: npt.NDArray[np.float64] = self.intercept + terms.sum(axis=1)
        return result

    def risk(self, features: Floats, present: Bools) -> npt.NDArray[np.float64]:
        result: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-self.log_odds(features, present)))
        return result


def bin_edges(features: Floats, present: Bools) -> Floats:
    """Per input, the distinct quantiles of its observed values, padded with +inf."""
    edges = np.full((N_INPUTS, N_EDGES), np.inf, dtype=np.float32)
    for column in range(N_INPUTS):
        observed = features[present[:, column], column]
        if observed.size:
            distinct = np.unique(np.quantile(observed, EDGE_QUANTILES).astype(np.float32))
            edges[column, : distinct.size] = distinct
    return edges


def one_hot_slots(slots: npt.NDArray[np.int64]) -> sparse.csr_matrix:
    """The design matrix: one column per (input, slot), one 1 per input and row."""
    rows = len(slots)
    columns = (np.arange(N_INPUTS)[None, :] * N_SLOTS + slots).ravel()
    row_index = np.repeat(np.arange(rows), N_INPUTS)
    ones = np.ones(rows * N_INPUTS, dtype=np.float64)
    return sparse.csr_matrix((ones, (row_index, columns)), shape=(rows, N_INPUTS * N_SLOTS))


def _fitted_logistic(design: sparse.csr_matrix, outcome: Bools, c: float) -> LogisticRegression:
    model = LogisticRegression(C=c, solver="lbfgs", max_iter=5000, tol=1e-8)
    model.fit(design, outcome.astype(np.int64))
    return model


def _log_loss(p: npt.NDArray[np.float64], outcome: Bools) -> float:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(-np.mean(np.where(outcome, np.log(p), np.log1p(-p))))


def fit_additive_model(
    features: Floats,
    present: Bools,
    outcome: Bools,
    candidate_c: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0),
    validation_share: float = 0.2,
) -> AdditiveRiskModel:
    """Bins from the training rows; C chosen by log-loss on the last `validation_share` of
    them; then refitted on all training rows. Deterministic for the same inputs."""
    edges = bin_edges(features, present)
    shell = AdditiveRiskModel(edges, np.zeros((N_INPUTS, N_SLOTS), np.float32), 0.0, 0.0)
    slots = shell.slots(features, present)
    design = one_hot_slots(slots)
    split = int(len(outcome) * (1 - validation_share))
    losses = []
    for c in candidate_c:
        candidate = _fitted_logistic(design[:split], outcome[:split], c)
        losses.append(_log_loss(candidate.predict_proba(design[split:])[:, 1], outcome[split:]))
    best_c = candidate_c[int(np.argmin(losses))]
    fitted = _fitted_logistic(design, outcome, best_c)
    table = fitted.coef_.reshape(N_INPUTS, N_SLOTS).astype(np.float64)
    terms = table[np.arange(N_INPUTS)[None, :], slots]
    centre = terms.mean(axis=0)
    return AdditiveRiskModel(
        edges=edges,
        table=(table - centre[:, None]).astype(np.float32),
        intercept=float(fitted.intercept_[0] + centre.sum()),
        l2_inverse_strength=best_c,
    )
