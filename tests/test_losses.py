"""trainer/losses.py: every loss against a slow reference written here (value and gradient),
the limiting cases the papers state, state handling, validation."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from ltaug.trainer.losses import LOSSES, build_loss  # noqa: E402

K = 4
INSTANCES = [50, 20, 5, 1]          # bags default groups: {3, 4} < 10 <= {1, 2} < 100
IMAGES = [30, 12, 4, 1]
NUM_IMAGES = 40                     # image frequencies 0.75, 0.3, 0.1, 0.025
LABELS = torch.tensor([0, 1, 2, 3, 4, 0, 2])
N = len(LABELS)
COUNTS = {"class_instance_counts": INSTANCES, "class_image_counts": IMAGES}
REQUIRED = {"eql": {"num_images": NUM_IMAGES}, "eql_softmax": {"num_images": NUM_IMAGES}}
SOFTMAX_FAMILY = ["ce", "cb", "eql_softmax", "seesaw", "concurrent_softmax"]


def make(name, **params):
    return build_loss(name, num_classes=K, **COUNTS, **{**REQUIRED.get(name, {}), **params})


def logits_for(cols=K + 1, rows=N, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(rows, cols, generator=g, dtype=torch.float64)


def value_and_grad(fn, logits, labels=LABELS):
    z = logits.clone().requires_grad_()
    value = fn(z, labels)
    (grad,) = torch.autograd.grad(value, z)
    return value.detach(), grad


def assert_same(fn, reference, logits, labels=LABELS, rtol=1e-6, atol=1e-9):
    v1, g1 = value_and_grad(fn, logits, labels)
    v2, g2 = value_and_grad(reference, logits, labels)
    torch.testing.assert_close(v1, v2, rtol=rtol, atol=atol)
    torch.testing.assert_close(g1, g2, rtol=rtol, atol=atol)


# ---- slow references: one RoI and one class at a time -------------------------------------

def ref_softmax_ce(z, y, weight=lambda i, j: 1.0, class_weight=lambda c: 1.0):
    """-log(e^{z_y} / sum_j weight(i, j) e^{z_j}), weight 1 on the label, times class_weight(y)."""
    total = 0
    for i in range(len(y)):
        t = int(y[i])
        denom = sum((1.0 if j == t else weight(i, j)) * torch.exp(z[i, j]) for j in range(z.shape[1]))
        total = total + class_weight(t) * -(z[i, t] - torch.log(denom))
    return total / len(y)


def ref_bce(z, y, keep=lambda i, c: True, columns=range(1, K + 1), weight=lambda i, c, t: 1.0):
    total = 0
    for i in range(len(y)):
        for c in columns:
            if keep(i, c):
                p = torch.sigmoid(z[i, c])
                t = int(y[i]) == c
                total = total + weight(i, c, t) * -(torch.log(p) if t else torch.log(1 - p))
    return total / len(y)


# ---- ce / bce / focal / cb -----------------------------------------------------------------

def test_ce_matches_reference_and_closed_form_gradient():
    z = logits_for()
    assert_same(make("ce"), ref_softmax_ce, z)
    _, grad = value_and_grad(make("ce"), z)
    closed = (z.softmax(1) - torch.nn.functional.one_hot(LABELS, K + 1)) / N
    torch.testing.assert_close(grad, closed)


def test_bce_matches_reference_and_ignores_background_column():
    z = logits_for()
    assert_same(make("bce"), ref_bce, z)
    _, grad = value_and_grad(make("bce"), z)
    target = torch.nn.functional.one_hot(LABELS, K + 1)[:, 1:]
    torch.testing.assert_close(grad[:, 1:], (z[:, 1:].sigmoid() - target) / N)
    assert (grad[:, 0] == 0).all()


def test_focal_matches_reference():
    alpha, gamma = 0.25, 2.0

    def ref(z, y):
        total = 0
        for i in range(len(y)):
            for c in range(1, K + 1):
                p = torch.sigmoid(z[i, c])
                t = int(y[i]) == c
                p_t, a_t = (p, alpha) if t else (1 - p, 1 - alpha)
                total = total - a_t * (1 - p_t) ** gamma * torch.log(p_t)
        return total / len(y)

    assert_same(make("focal", alpha=alpha, gamma=gamma), ref, logits_for())


def test_focal_without_alpha_and_gamma_is_bce():
    assert_same(make("focal", alpha=None, gamma=0.0), make("bce"), logits_for())


def test_cb_matches_reference():
    beta = 0.9
    w = [(1 - beta) / (1 - beta ** n) for n in INSTANCES]
    w = [1.0] + [x * K / sum(w) for x in w]
    assert w[4] > w[3] > w[2] > w[1]
    assert_same(make("cb", beta=beta), lambda z, y: ref_softmax_ce(z, y, class_weight=lambda c: w[c]), logits_for())


def test_cb_with_beta_zero_is_ce():
    assert_same(make("cb", beta=0.0), make("ce"), logits_for())


def test_cb_class_without_instances_gets_a_finite_weight():
    loss = build_loss("cb", num_classes=K, class_instance_counts=[50, 20, 5, 0], beta=0.99)
    assert torch.isfinite(loss.class_weight).all()
    torch.testing.assert_close(loss.class_weight[1:].sum(), torch.tensor(float(K)))


# ---- eql / eql_softmax ---------------------------------------------------------------------

LAM = 0.2   # rare (f < 0.2): classes 3 and 4


def test_eql_matches_reference():
    rare = {3, 4}

    def keep(i, c):
        return not (int(LABELS[i]) > 0 and c != int(LABELS[i]) and c in rare)

    assert_same(make("eql", lam=LAM), lambda z, y: ref_bce(z, y, keep=keep), logits_for())
    _, grad = value_and_grad(make("eql", lam=LAM), logits_for())
    assert grad[1, 3] == 0 and grad[1, 4] == 0      # class-1 RoI: rare negatives excluded
    assert grad[0, 3] != 0 and grad[4, 4] != 0      # background RoI and own class still trained


def test_eql_with_lambda_zero_is_bce():
    assert_same(make("eql", lam=0.0), make("bce"), logits_for())


def test_eql_softmax_matches_reference():
    def weight(i, j):
        return 0.0 if int(LABELS[i]) > 0 and j in (3, 4) else 1.0

    assert_same(make("eql_softmax", lam=LAM), lambda z, y: ref_softmax_ce(z, y, weight=weight), logits_for())


@pytest.mark.parametrize("params", [{"lam": 0.0}, {"lam": LAM, "gamma": 0.0}])
def test_eql_softmax_without_exclusion_is_ce(params):
    assert_same(make("eql_softmax", **params), make("ce"), logits_for())


def test_eql_softmax_random_beta_is_seeded():
    z = logits_for()
    a = [make("eql_softmax", lam=LAM, gamma=0.5, seed=3)(z, LABELS) for _ in range(2)]
    b = [make("eql_softmax", lam=LAM, gamma=0.5, seed=3)(z, LABELS) for _ in range(2)]
    assert a == b
    always, never = make("eql_softmax", lam=LAM)(z, LABELS), make("ce")(z, LABELS)
    assert all(always < v < never for v in a)     # excluding a negative only lowers the loss


# ---- eqlv2 ---------------------------------------------------------------------------------

def test_eqlv2_starts_as_bce_with_objectness_and_collects_gradients():
    loss = make("eqlv2").train()
    z = logits_for()
    assert_same(loss, lambda z, y: ref_bce(z, y, columns=range(K + 1)), z)   # weights 1 at the start
    p = z.sigmoid()
    for c in range(1, K + 1):
        pos = sum(1 - p[i, c] for i in range(N) if LABELS[i] == c)
        neg = sum(p[i, c] for i in range(N) if LABELS[i] != c)
        torch.testing.assert_close(loss.pos_grad[c - 1].double(), pos, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(loss.neg_grad[c - 1].double(), neg, rtol=1e-5, atol=1e-6)
    assert {"pos_grad", "neg_grad", "pos_neg"} <= set(loss.state_dict())


def test_eqlv2_reweights_from_its_statistics():
    loss = make("eqlv2").eval()
    loss.pos_neg.copy_(torch.tensor([2.0, 0.9, 0.5, 0.05]))
    q = [1.0] + [1 / (1 + math.exp(-12 * (g - 0.8))) for g in loss.pos_neg.tolist()]

    def weight(i, c, t):
        return 1.0 if c == 0 else (1 + 4 * (1 - q[c]) if t else q[c])

    assert_same(loss, lambda z, y: ref_bce(z, y, columns=range(K + 1), weight=weight), logits_for(), rtol=1e-5)
    assert torch.equal(loss.pos_neg, torch.tensor([2.0, 0.9, 0.5, 0.05]))   # eval: no update


def test_eqlv2_postprocess_multiplies_by_objectness():
    z = logits_for()
    probs = make("eqlv2").postprocess(z)
    p = z.sigmoid()
    torch.testing.assert_close(probs[:, 0], p[:, 0])
    torch.testing.assert_close(probs[:, 1:], p[:, 1:] * (1 - p[:, :1]))


# ---- seesaw --------------------------------------------------------------------------------

def ref_seesaw(counts, p=0.8, q=2.0, eps=1e-2):
    n = [1.0] + [max(c, 1.0) for c in counts]

    def ref(z, y):
        s = z.detach().softmax(1)

        def weight(i, j):
            t = int(y[i])
            if t == 0 or j == 0:
                return 1.0
            m = (n[j] / n[t]) ** p if n[j] < n[t] else 1.0
            r = float(s[i, j]) / max(float(s[i, t]), eps)
            return m * (r ** q if r > 1 else 1.0)

        return ref_softmax_ce(z, y, weight=weight)
    return ref


def test_seesaw_counts_this_batch_before_the_loss():
    loss = make("seesaw").train()
    z = logits_for(seed=1)
    value = loss(z, LABELS)
    assert loss.cum_samples.tolist() == [1, 2, 1, 1]
    torch.testing.assert_close(value, ref_seesaw([1, 2, 1, 1])(z, LABELS))


def test_seesaw_matches_reference():
    loss = make("seesaw").eval()
    loss.cum_samples.copy_(torch.tensor([500.0, 40.0, 3.0, 0.0]))
    for seed in range(3):
        assert_same(loss, ref_seesaw([500, 40, 3, 0]), logits_for(seed=seed))
    assert loss.cum_samples.tolist() == [500, 40, 3, 0]       # eval: no update


def test_seesaw_with_p_and_q_zero_is_ce():
    loss = make("seesaw", p=0.0, q=0.0).train()
    loss.cum_samples.copy_(torch.tensor([500.0, 40.0, 3.0, 0.0]))
    assert_same(loss, make("ce"), logits_for())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_seesaw_factors_stay_finite_for_half_precision_logits(dtype):
    """Under CUDA autocast the logits are float16, where counts above 65504 are inf: the
    factors must still be the float32 ones (finite, > 0), and so must the loss."""
    loss = make("seesaw").eval()
    loss.cum_samples.copy_(torch.tensor([1e5, 50.0, 5.0, 1.0]))
    z = logits_for(seed=2).to(dtype)
    factors = loss.seesaw_factors(z, LABELS)
    assert torch.isfinite(factors).all() and (factors > 0).all()
    expected = loss.seesaw_factors(z.float(), LABELS)
    torch.testing.assert_close(factors.float(), expected, rtol=1e-3, atol=0)
    assert factors[1, 2] < 0.01  # class 2 (50 seen) against class 1 (1e5 seen): mitigated, not zeroed
    value, grad = value_and_grad(loss, z)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    torch.testing.assert_close(value.double(), ref_seesaw([1e5, 50, 5, 1])(z.double(), LABELS), rtol=1e-2, atol=1e-3)


def test_seesaw_counts_are_saved_and_restored():
    loss = make("seesaw").train()
    loss(logits_for(), LABELS)
    loss(logits_for(), LABELS)
    state = loss.state_dict()
    assert state["cum_samples"].tolist() == [2, 4, 2, 2]
    fresh = make("seesaw")
    fresh.load_state_dict(state)
    assert fresh.cum_samples.tolist() == [2, 4, 2, 2]


# ---- seesaw_mmdet ---------------------------------------------------------------------------

def ref_seesaw_mmdet(counts, p=0.8, q=2.0, eps=1e-2):
    """The paper's Seesaw over the K class columns 1..K for foreground RoIs, plus the 2-way
    objectness CE over (object = column K + 1, background = column 0) for every RoI; / N."""
    n = [max(c, 1.0) for c in counts]

    def ref(z, y):
        total = 0
        for i in range(len(y)):
            t = int(y[i])
            pair = [z[i, K + 1], z[i, 0]]
            target = 1 if t == 0 else 0
            total = total - (pair[target] - torch.log(sum(torch.exp(v) for v in pair)))
            if t == 0:
                continue
            s = z[i, 1:K + 1].detach().softmax(0)
            denom = 0
            for j in range(1, K + 1):
                m = (n[j - 1] / n[t - 1]) ** p if n[j - 1] < n[t - 1] else 1.0
                r = float(s[j - 1]) / max(float(s[t - 1]), eps)
                weight = 1.0 if j == t else m * (r ** q if r > 1 else 1.0)
                denom = denom + weight * torch.exp(z[i, j])
            total = total - (z[i, t] - torch.log(denom))
        return total / len(y)
    return ref


def test_seesaw_mmdet_layout_and_counts():
    assert LOSSES["seesaw_mmdet"].num_logits(K) == K + 2 and make("seesaw_mmdet").logit_dim == K + 2
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        make("seesaw_mmdet")(logits_for(K + 1), LABELS)
    loss = make("seesaw_mmdet").train()
    z = logits_for(K + 2, seed=1)
    value = loss(z, LABELS)
    assert loss.cum_samples.tolist() == [1, 2, 1, 1]         # this batch counted before the loss
    torch.testing.assert_close(value, ref_seesaw_mmdet([1, 2, 1, 1])(z, LABELS))


def test_seesaw_mmdet_matches_reference():
    loss = make("seesaw_mmdet").eval()
    loss.cum_samples.copy_(torch.tensor([500.0, 40.0, 3.0, 0.0]))
    for seed in range(3):
        assert_same(loss, ref_seesaw_mmdet([500, 40, 3, 0]), logits_for(K + 2, seed=seed))
    for p, q in [(0.0, 0.0), (0.0, 2.0), (0.8, 0.0)]:
        loss = make("seesaw_mmdet", p=p, q=q).eval()
        loss.cum_samples.copy_(torch.tensor([500.0, 40.0, 3.0, 0.0]))
        assert_same(loss, ref_seesaw_mmdet([500, 40, 3, 0], p=p, q=q), logits_for(K + 2, seed=5))
    assert loss.cum_samples.tolist() == [500, 40, 3, 0]       # eval: no update


def test_seesaw_mmdet_postprocess_is_class_softmax_times_objectness():
    z = logits_for(K + 2)
    probs = make("seesaw_mmdet").postprocess(z)
    objectness = z[:, [K + 1, 0]].softmax(1)
    torch.testing.assert_close(probs[:, 0], objectness[:, 1])
    torch.testing.assert_close(probs[:, 1:], z[:, 1:K + 1].softmax(1) * objectness[:, :1])
    torch.testing.assert_close(probs.sum(1), torch.ones(N, dtype=z.dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_seesaw_mmdet_factors_stay_finite_for_half_precision_logits(dtype):
    loss = make("seesaw_mmdet").eval()
    loss.cum_samples.copy_(torch.tensor([1e5, 50.0, 5.0, 1.0]))
    z = logits_for(K + 2, seed=2).to(dtype)
    fg = LABELS > 0
    factors = loss.seesaw_factors(z[fg, 1:K + 1], LABELS[fg] - 1)
    assert factors.dtype == torch.float32 and torch.isfinite(factors).all() and (factors > 0).all()
    value, grad = value_and_grad(loss, z)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_seesaw_mmdet_counts_are_saved_and_restored():
    loss = make("seesaw_mmdet").train()
    loss(logits_for(K + 2), LABELS)
    state = loss.state_dict()
    assert state["cum_samples"].tolist() == [1, 2, 1, 1]
    fresh = make("seesaw_mmdet")
    fresh.load_state_dict(state)
    assert fresh.cum_samples.tolist() == [1, 2, 1, 1]


# ---- bags ----------------------------------------------------------------------------------

def test_bags_layout():
    assert LOSSES["bags"].num_logits(K) == K + 2 + 4
    assert make("bags").logit_dim == K + 2 + 4
    assert make("bags", boundaries=(0, 3)).logit_dim == K + 2 + 2
    with pytest.raises(ValueError, match=r"\(N, 10\)"):
        make("bags")(logits_for(K + 1), LABELS)


def test_bags_matches_reference():
    # default boundaries: group 1 = {3, 4}, group 2 = {1, 2}, groups 3 and 4 empty
    groups = {1: [3, 4], 2: [1, 2]}

    def ref(z, y):
        total = 0
        for i in range(len(y)):          # group 0: [background, others]
            t = 0 if int(y[i]) == 0 else 1
            pair = [z[i, 0], z[i, K + 1]]
            total = total - (pair[t] - torch.log(sum(torch.exp(v) for v in pair))) / len(y)
        for g, members in groups.items():
            columns = [K + 1 + g] + members
            for i in range(len(y)):
                target = columns.index(int(y[i])) if int(y[i]) in members else 0
                lse = torch.log(sum(torch.exp(z[i, c]) for c in columns))
                total = total - (z[i, columns[target]] - lse) / len(y)
        return total

    assert_same(make("bags", others_ratio=None), ref, logits_for(K + 6))
    assert_same(make("bags", others_ratio=8.0), ref, logits_for(K + 6))   # 8x own >= all others


def test_bags_with_one_group_is_softmax_ce_up_to_the_others_column():
    loss = make("bags", boundaries=(0,), others_ratio=None)
    z = logits_for(K + 3)
    z[:, 0] = z[:, K + 1] = 0               # group 0 (background vs others) contributes log 2
    value, grad = value_and_grad(loss, z)
    group1 = [K + 2, 1, 2, 3, 4]            # the others column plays background
    ce_value, ce_grad = value_and_grad(make("ce"), z[:, group1])
    torch.testing.assert_close(value, ce_value + math.log(2))
    torch.testing.assert_close(grad[:, group1], ce_grad)
    is_fg = (LABELS > 0).double()
    torch.testing.assert_close(grad[:, 0], (0.5 - (1 - is_fg)) / N)


def test_bags_averages_each_group_over_the_rois_it_uses():
    labels = torch.tensor([3, 1, 2] + [0] * 9)
    z = logits_for(K + 6, rows=len(labels))
    twin = make("bags", others_ratio=1.0, seed=4)   # same seed: draws the same "others"
    used = {g: twin._used(twin.local_labels[g][labels]) for g in (1, 2)}
    assert int(used[1].sum()) == 2 and int(used[2].sum()) == 4

    def ref(z, y):
        total = torch.nn.functional.cross_entropy(z[:, [0, K + 1]], (y > 0).long())
        for g, members in {1: [3, 4], 2: [1, 2]}.items():
            rows = used[g].nonzero().flatten().tolist()
            columns = [K + 1 + g] + members
            for i in rows:
                target = columns.index(int(y[i])) if int(y[i]) in members else 0
                lse = torch.log(sum(torch.exp(z[i, c]) for c in columns))
                total = total - (z[i, columns[target]] - lse) / len(rows)
        return total

    assert_same(make("bags", others_ratio=1.0, seed=4), ref, z, labels)


def test_bags_samples_others_in_proportion():
    loss = make("bags", others_ratio=2.0, seed=1)
    local = loss.local_labels[1][torch.tensor([3] + [0] * 20 + [4, 1, 2])]    # two own RoIs
    used = loss._used(local)
    assert int(used.sum()) == 2 + 4 and used[0] and used[21]
    assert not loss._used(torch.zeros(5, dtype=torch.long)).any()          # no own RoIs: unused


def test_bags_postprocess_merges_groups():
    z = logits_for(K + 6)
    probs = make("bags").postprocess(z)
    p0 = z[:, [0, K + 1]].softmax(1)
    torch.testing.assert_close(probs[:, 0], p0[:, 0])
    g1 = z[:, [K + 2, 3, 4]].softmax(1)
    g2 = z[:, [K + 3, 1, 2]].softmax(1)
    torch.testing.assert_close(probs[:, [3, 4]], p0[:, 1:] * g1[:, 1:])
    torch.testing.assert_close(probs[:, [1, 2]], p0[:, 1:] * g2[:, 1:])


# ---- federated -----------------------------------------------------------------------------

SPARSE_LABELS = torch.tensor([0, 2, 0, 0, 2, 0, 0])


def test_federated_matches_reference_on_its_subset():
    z = logits_for()
    subset = make("federated", subset_size=3, seed=5).sample_classes(SPARSE_LABELS).tolist()
    assert len(subset) == 3 and 2 in subset
    ref = lambda z, y: ref_bce(z, y, keep=lambda i, c: c in subset)   # noqa: E731
    assert_same(make("federated", subset_size=3, seed=5), ref, z, SPARSE_LABELS)


def test_federated_subsets_are_seeded():
    a, b = make("federated", subset_size=2, seed=7), make("federated", subset_size=2, seed=7)
    draws_a = [a.sample_classes(SPARSE_LABELS).tolist() for _ in range(5)]
    assert draws_a == [b.sample_classes(SPARSE_LABELS).tolist() for _ in range(5)]
    gen = torch.Generator().manual_seed(7)
    c = build_loss("federated", num_classes=K, class_image_counts=IMAGES, subset_size=2, generator=gen)
    assert c.generator is gen and [c.sample_classes(SPARSE_LABELS).tolist() for _ in range(5)] == draws_a


def test_federated_keeps_positives_and_never_draws_unseen_classes():
    loss = build_loss("federated", num_classes=K, class_image_counts=[30, 12, 0, 5], subset_size=3)
    for _ in range(20):
        subset = loss.sample_classes(SPARSE_LABELS).tolist()
        assert subset == [1, 2, 4]
    assert loss.sample_classes(torch.tensor([3, 1, 2, 4])).tolist() == [1, 2, 3, 4]


def test_federated_with_all_classes_is_bce():
    assert_same(make("federated", subset_size=50), make("bce"), logits_for())


# ---- concurrent softmax --------------------------------------------------------------------

def test_concurrent_softmax_matches_reference():
    r = [[0.9, 0.5, 0.0, 0.0],    # diagonal is ignored
         [0.2, 0.0, 0.0, 0.3],
         [0.0, 0.0, 0.0, 1.0],    # class 3 objects are always also labelled 4
         [0.0, 0.0, 0.1, 0.0]]

    def weight(i, j):
        t = int(LABELS[i])
        return 1.0 if t == 0 or j == 0 else 1 - r[t - 1][j - 1]

    loss = make("concurrent_softmax", concurrence=r)
    assert_same(loss, lambda z, y: ref_softmax_ce(z, y, weight=weight), logits_for())
    _, grad = value_and_grad(loss, logits_for())
    assert grad[3, 4] == 0


def test_concurrent_softmax_with_zero_concurrence_is_ce():
    assert_same(make("concurrent_softmax"), make("ce"), logits_for())
    assert_same(make("concurrent_softmax", concurrence=torch.zeros(K, K)), make("ce"), logits_for())


# ---- every loss: building, shapes, postprocess, validation ---------------------------------

@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_builds_trains_and_postprocesses(name):
    loss = make(name).train()
    assert loss.logit_dim == LOSSES[name].num_logits(K)
    z = logits_for(loss.logit_dim).float().requires_grad_()
    value = loss(z, LABELS)
    assert value.dim() == 0 and torch.isfinite(value) and value > 0
    value.backward()
    assert torch.isfinite(z.grad).all()
    probs = loss.postprocess(z.detach())
    assert probs.shape == (N, K + 1) and ((probs >= 0) & (probs <= 1)).all()
    assert loss(z.detach()[:0], LABELS[:0]) == 0


@pytest.mark.parametrize("name", SOFTMAX_FAMILY)
def test_softmax_family_postprocess_is_softmax(name):
    z = logits_for()
    probs = make(name).postprocess(z)
    torch.testing.assert_close(probs.sum(1), torch.ones(N, dtype=z.dtype))
    torch.testing.assert_close(probs, z.softmax(1))


@pytest.mark.parametrize("name", ["bce", "focal", "eql", "federated"])
def test_sigmoid_postprocess(name):
    z = logits_for()
    probs = make(name).postprocess(z)
    p = z[:, 1:].sigmoid()
    torch.testing.assert_close(probs[:, 1:], p)
    torch.testing.assert_close(probs[:, 0], (1 - p).prod(1))


def test_unknown_name_is_a_value_error():
    with pytest.raises(ValueError, match="unknown loss 'softmax'.*seesaw"):
        build_loss("softmax", num_classes=K)


@pytest.mark.parametrize("name, params, message", [
    ("focal", {"gamma": -1.0}, "gamma must be >= 0"),
    ("focal", {"alpha": 1.5}, "alpha"),
    ("cb", {"beta": 1.0}, r"beta must be in \[0, 1\)"),
    ("seesaw", {"p": -0.5}, "p and q"),
    ("seesaw_mmdet", {"q": -1.0}, "p and q"),
    ("seesaw_mmdet", {"eps": 0.0}, "eps must be > 0"),
    ("eqlv2", {"alpha": -1.0}, "alpha"),
    ("eql", {"num_images": None}, "num_images"),
    ("eql", {"num_images": 3}, "num_images"),          # fewer than a class's image count
    ("eql_softmax", {"gamma": 2.0}, "probability"),
    ("bags", {"boundaries": (10, 100)}, "start at 0"),
    ("bags", {"boundaries": (0, 100, 10)}, "increase"),
    ("bags", {"others_ratio": 0}, "others_ratio"),
    ("federated", {"subset_size": 0}, "subset_size"),
    ("concurrent_softmax", {"concurrence": torch.zeros(K + 1, K + 1)}, "4 x 4"),
    ("concurrent_softmax", {"concurrence": torch.full((K, K), 2.0)}, r"\[0, 1\]"),
    ("ce", {"gamma": 2.0}, "takes no parameter gamma; it takes none"),
    ("focal", {"beta": 0.9}, "it takes alpha, gamma"),
])
def test_bad_parameters_are_value_errors(name, params, message):
    with pytest.raises(ValueError, match=message):
        make(name, **params)


def test_bad_counts_are_value_errors():
    with pytest.raises(ValueError, match=r"class_instance_counts must have one entry per foreground class \(4\)"):
        build_loss("ce", num_classes=K, class_instance_counts=[1, 2, 3])
    with pytest.raises(ValueError, match="non-negative"):
        build_loss("seesaw", num_classes=K, class_image_counts=[1, -2, 3, 4])
    for name in ["cb", "bags"]:
        with pytest.raises(ValueError, match="needs class_instance_counts"):
            build_loss(name, num_classes=K, class_image_counts=IMAGES)
    for name, extra in [("eql", {"num_images": NUM_IMAGES}), ("federated", {})]:
        with pytest.raises(ValueError, match="needs class_image_counts"):
            build_loss(name, num_classes=K, class_instance_counts=INSTANCES, **extra)
    with pytest.raises(ValueError, match="num_classes"):
        build_loss("ce", num_classes=0)


def test_wrong_logit_width_is_a_value_error():
    with pytest.raises(ValueError, match=r"expects logits of shape \(N, 5\)"):
        make("ce")(logits_for(K), LABELS)


# ---- no silent equivalence (issue: a loss whose parameters make it another one says so) ------

EQUIV_COUNTS = dict(class_instance_counts=[500, 40, 3], class_image_counts=[300, 30, 2])


@pytest.mark.parametrize("name, params, plain", [
    ("eql", {"num_images": 400}, "bce"),             # f = 2/400 = 0.005 > 1.76e-3: no class rare
    ("eql_softmax", {"num_images": 400}, "ce"),
    ("eql_softmax", {"num_images": 400, "lam": 0.5, "gamma": 0.0}, "ce"),
    ("seesaw", {"p": 0.0, "q": 0.0}, "ce"),
    ("concurrent_softmax", {}, "ce"),
    ("focal", {"gamma": 0.0, "alpha": None}, "bce"),
    ("cb", {"beta": 0.0}, "ce"),
    ("federated", {"subset_size": 3}, "bce"),
])
def test_a_loss_that_is_another_says_so_and_is_it(name, params, plain):
    loss = build_loss(name, num_classes=3, **EQUIV_COUNTS, **params).double()
    note = loss.equivalence()
    assert note and f"{plain} exactly" in note and "\n" not in note
    reference = build_loss(plain, num_classes=3, **EQUIV_COUNTS).double()
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(32, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (32,), generator=g)
    assert torch.allclose(loss(logits, labels), reference(logits, labels), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name, params", [
    ("eql", {"num_images": 400, "lam": 0.01}), ("eql", {"num_images": 400, "tail": 0.34}),
    ("eql", {"bins": "r", "rare_max": 2}), ("eql_softmax", {"num_images": 400, "tail": 0.5}),
    ("seesaw", {}), ("seesaw_mmdet", {}), ("seesaw_mmdet", {"p": 0.0, "q": 0.0}), ("concurrent_softmax", {"concurrence": [[0, 0.5, 0], [0.5, 0, 0], [0, 0, 0]]}),
    ("focal", {}), ("cb", {}), ("federated", {"subset_size": 2}),
])
def test_a_loss_that_is_its_own_says_nothing(name, params):
    assert build_loss(name, num_classes=3, **EQUIV_COUNTS, **params).equivalence() is None


def test_eql_lambda_from_the_tail_or_the_bins():
    """tail: the rarest fraction of the classes (ties included); bins: the LVIS bins by images."""
    counts = dict(class_instance_counts=[9, 8, 7, 6], class_image_counts=[100, 12, 12, 3])
    rare = lambda **kw: build_loss("eql", num_classes=4, num_images=200, **counts, **kw).rare.tolist()  # noqa: E731
    assert rare(tail=0.25) == [False, False, False, True]
    assert rare(tail=0.5) == [False, True, True, True]           # the 2nd rarest ties with the 3rd
    assert rare(tail=0.0) == [False] * 4 and rare(tail=1.0) == [True] * 4
    assert rare(lam=0.05) == [False, False, False, True] and rare() == [False] * 4
    assert rare(bins="r", rare_max=10, common_max=50) == [False, False, False, True]
    assert rare(bins="rc", rare_max=10, common_max=50) == [False, True, True, True]
    with pytest.raises(ValueError, match="one of lam, tail, bins"):
        rare(lam=0.1, tail=0.5)
    with pytest.raises(ValueError, match="bins is r or rc"):
        rare(bins="f")
