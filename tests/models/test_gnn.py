"""GCN, GAT, GraphSAGE: sparse path = dense closed form = torch_geometric's layers on copied weights."""
import pytest
import torch

from deepatlas.models.gnn import (GATConv, GCNConv, GNN, SAGEConv, add_self_loops, global_pool,
                                  sample_neighbours, scatter, scatter_softmax)


def random_graph(n=12, e=40, f=5, seed=0, undirected=False):
    g = torch.Generator().manual_seed(seed)
    edges = torch.randint(0, n, (2, e), generator=g)
    edges = edges[:, edges[0] != edges[1]]
    if undirected:
        edges = torch.cat([edges, edges.flip(0)], 1)
    return torch.randn(n, f, generator=g), edges


def test_scatter_against_loops():
    src = torch.randn(9, 3)
    index = torch.tensor([0, 2, 2, 0, 1, 2, 0, 2, 2])
    for reduce, fn in (("sum", lambda r: r.sum(0)), ("mean", lambda r: r.mean(0)),
                       ("max", lambda r: r.amax(0))):
        out = scatter(src, index, 4, reduce)
        for i in range(3):
            torch.testing.assert_close(out[i], fn(src[index == i]))
        assert out[3].abs().sum() == 0  # a node with no incoming edge gets 0
    soft = scatter_softmax(torch.randn(9, 2) * 50, index, 4)
    torch.testing.assert_close(scatter(soft, index, 4)[:3], torch.ones(3, 2))


def test_self_loops_replaced_not_doubled():
    e = add_self_loops(torch.tensor([[0, 1, 1], [1, 1, 0]]), 3)
    loops = e[:, e[0] == e[1]]
    assert sorted(loops[0].tolist()) == [0, 1, 2]


@pytest.mark.parametrize("undirected", [False, True])
def test_sparse_equals_dense(undirected):
    x, ei = random_graph(undirected=undirected)
    torch.manual_seed(0)
    for layer in (GCNConv(5, 4), GATConv(5, 3, heads=2), GATConv(5, 3, heads=2, concat=False),
                  SAGEConv(5, 4, "mean"), SAGEConv(5, 4, "max"), SAGEConv(5, 4, "sum")):
        torch.testing.assert_close(layer(x, ei), layer(x, ei, dense=True), msg=str(layer))


def test_gcn_closed_form_on_a_path():
    # path 0-1-2, identity weight: Ã = A + I, degrees (2, 3, 2)
    layer = GCNConv(1, 1, bias=False)
    layer.lin.weight.data.fill_(1.0)
    ei = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    out = layer(torch.tensor([[1.0], [0.0], [0.0]]), ei)
    expect = torch.tensor([[1 / 2], [1 / (2 * 3) ** 0.5], [0.0]])
    torch.testing.assert_close(out, expect)


def test_gat_attention_sums_to_one_per_node():
    x, ei = random_graph()
    _, edges, alpha = GATConv(5, 3, heads=4)(x, ei, return_attention=True)
    torch.testing.assert_close(scatter(alpha, edges[1], 12), torch.ones(12, 4))


def test_sampling_keeps_at_most_k_per_node():
    _, ei = random_graph(n=10, e=200, seed=3)
    s = sample_neighbours(ei, 10, 3, torch.Generator().manual_seed(0))
    counts = torch.bincount(s[1], minlength=10)
    full = torch.bincount(ei[1], minlength=10)
    assert torch.equal(counts, full.clamp(max=3))
    # every kept edge is an edge of the graph
    have = {tuple(c) for c in ei.T.tolist()}
    assert all(tuple(c) in have for c in s.T.tolist())


def test_readout_and_stack():
    x, ei = random_graph()
    batch = torch.tensor([0] * 5 + [1] * 7)
    torch.testing.assert_close(global_pool(x, batch, 2)[1], x[5:].mean(0))
    for kind in ("gcn", "gat", "sage", "mlp"):
        assert GNN(kind, 5, 8, 3, readout="mean")(x, ei, batch, 2).shape == (2, 3)
        assert GNN(kind, 5, 8, 3).eval()(x, ei).shape == (12, 3)


def test_bad_graph_named():
    with pytest.raises(ValueError, match="refers to nodes"):
        GCNConv(5, 2)(torch.randn(3, 5), torch.tensor([[0, 1], [1, 7]]))
    with pytest.raises(ValueError, match="kind="):
        GNN("gin", 5, 8, 3)


# ---- torch_geometric on the same weights --------------------------------------------------------

@pytest.mark.parametrize("undirected", [False, True])
def test_equal_to_torch_geometric(undirected):
    pyg = pytest.importorskip("torch_geometric.nn", reason="torch_geometric not installed: "
                              "pip install torch_geometric (reference only)")
    x, ei = random_graph(n=30, e=120, f=6, seed=1, undirected=undirected)
    torch.manual_seed(1)

    ref = pyg.GCNConv(6, 4)
    ours = GCNConv(6, 4)
    ours.lin.weight.data.copy_(ref.lin.weight)
    ours.bias.data.copy_(torch.randn(4))
    ref.bias.data.copy_(ours.bias)
    torch.testing.assert_close(ours(x, ei), ref(x, ei))

    for concat in (True, False):
        ref = pyg.GATConv(6, 3, heads=4, concat=concat)
        ours = GATConv(6, 3, heads=4, concat=concat)
        ours.lin.weight.data.copy_(ref.lin.weight)
        ours.att_src.data.copy_(ref.att_src)
        ours.att_dst.data.copy_(ref.att_dst)
        ref.bias.data.normal_()
        ours.bias.data.copy_(ref.bias)
        torch.testing.assert_close(ours(x, ei), ref(x, ei))

    for aggr in ("mean", "max", "sum"):
        ref = pyg.SAGEConv(6, 4, aggr=aggr)
        ours = SAGEConv(6, 4, aggr=aggr)
        ours.load_state_dict({"lin_l.weight": ref.lin_l.weight, "lin_l.bias": ref.lin_l.bias,
                              "lin_r.weight": ref.lin_r.weight})
        torch.testing.assert_close(ours(x, ei), ref(x, ei))
