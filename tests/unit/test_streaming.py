"""The weight-streaming tree and its pipelined schedules (no transport needed)."""

import pytest

from collectives.streaming import Tree, down_steps, up_steps


@pytest.mark.parametrize("p, k, workers, relays", [
    (2, 2, [1], []), (3, 2, [1, 2], []), (5, 2, [2, 3, 4], [1]), (7, 2, [3, 4, 5, 6], [1, 2]),
    (4, 1, [3], [1, 2]), (9, 3, [3, 4, 5, 6, 7, 8], [1, 2]),
])
def test_tree_roles(p, k, workers, relays):
    t = Tree(p, k)
    assert t.workers == workers and t.relays == relays
    assert t.role(0) == "source"
    for r in range(1, p):
        assert r in t.children(t.parent(r))


def test_tree_needs_a_worker():
    with pytest.raises(ValueError):
        Tree(1, 2)
    with pytest.raises(ValueError):
        Tree(3, 0)


def _matched(tree, steps_of, nlayers):
    """Every send at step t has the matching receive at the same step, and vice versa."""
    steps = {r: steps_of(tree, r, nlayers) for r in range(tree.nranks)}
    lengths = {len(s) for s in steps.values()}
    assert len(lengths) == 1
    for t in range(lengths.pop()):
        sent = {(r, peer, layer) for r in steps for layer, peer in steps[r][t][0]}
        received = {(peer, r, layer) for r in steps for layer, peer in steps[r][t][1]}
        assert sent == received, t
    return steps


@pytest.mark.parametrize("p, k", [(2, 1), (3, 2), (5, 2), (7, 2), (8, 3), (6, 1)])
@pytest.mark.parametrize("layers", [1, 2, 5])
def test_down_schedule_delivers_every_layer_in_order_after_the_parent(p, k, layers):
    tree = Tree(p, k)
    steps = _matched(tree, down_steps, layers)
    got = {r: [] for r in range(p)}
    for t in range(len(steps[0])):
        for r in range(p):
            for layer, _ in steps[r][t][1]:
                got[r].append((layer, t))
    for r in range(1, p):
        assert [layer for layer, _ in got[r]] == list(range(layers))
        for layer, t in got[r]:
            if tree.parent(r) != 0:  # the parent had it a step earlier
                assert (layer, t - 1) in got[tree.parent(r)]


@pytest.mark.parametrize("p, k", [(2, 1), (3, 2), (5, 2), (7, 2), (8, 3), (6, 1)])
@pytest.mark.parametrize("layers", [1, 3])
def test_up_schedule_sends_only_after_all_children(p, k, layers):
    tree = Tree(p, k)
    steps = _matched(tree, up_steps, layers)
    for r in range(p):
        for t, (sends, _) in enumerate(steps[r]):
            for layer, _ in sends:
                for c in tree.children(r):
                    arrivals = [s for s in range(len(steps[r])) if (layer, c) in steps[r][s][1]]
                    assert arrivals and arrivals[0] < t
    source_gets = sorted(layer for t in range(len(steps[0])) for layer, _ in steps[0][t][1])
    assert source_gets == sorted(list(range(layers)) * len(tree.children(0)))
