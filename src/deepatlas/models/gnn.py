"""Graph neural networks as message passing: GCN, GAT, GraphSAGE and a graph-level readout.

A graph is node features x (N, F) and edge_index (2, E): edge e carries a message from its
source j = edge_index[0, e] to its target i = edge_index[1, e] (torch_geometric's convention).
Every layer is one round of (Gilmer et al. 2017, eqs. 1-2):

    gather   x_j, x_i for each edge                       (E, F)
    message  m_ij = φ(x_i, x_j)                           (E, F')
    aggregate m_i = ⊕_{j ∈ N(i)} m_ij   (sum, mean, max)   (N, F')
    update   x_i' = γ(x_i, m_i)                           (N, F'')

with the aggregation a scatter over the sparse target indices, so the cost is O(E), never O(N²).
Each layer also has the plain dense path (`dense=True`): the same equation with the N×N adjacency
matrix, which the tests hold equal to the sparse one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


# ---- scatter: aggregate edge values into their target nodes -----------------------------------

def check_graph(x: Tensor, edge_index: Tensor) -> None:
    """Name the problem in one line rather than failing deep inside an index_add_."""
    if x.dim() != 2:
        raise ValueError(f"node features should be (N, F), got shape {tuple(x.shape)}")
    if edge_index.dim() != 2 or edge_index.size(0) != 2 or edge_index.dtype != torch.long:
        raise ValueError(f"edge_index should be a (2, E) long tensor, got {edge_index.dtype} "
                         f"{tuple(edge_index.shape)}")
    if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= x.size(0)):
        raise ValueError(f"edge_index refers to nodes {int(edge_index.min())}..{int(edge_index.max())} "
                         f"but there are {x.size(0)} nodes (valid 0..{x.size(0) - 1})")


def scatter(src: Tensor, index: Tensor, num_nodes: int, reduce: str = "sum") -> Tensor:
    """out[i] = ⊕_{e: index[e] = i} src[e] for ⊕ in sum | mean | max; (E, *) -> (N, *).

    A node that receives nothing gets 0 (for max too, as torch_geometric does)."""
    out = src.new_zeros((num_nodes,) + src.shape[1:])
    idx = index.view(-1, *([1] * (src.dim() - 1))).expand_as(src)
    if reduce == "sum":
        return out.index_add_(0, index, src)
    if reduce == "mean":
        return out.scatter_reduce_(0, idx, src, "mean", include_self=False)
    if reduce == "max":
        return out.scatter_reduce_(0, idx, src, "amax", include_self=False)
    raise ValueError(f"reduce={reduce!r}; valid: sum, mean, max")


def scatter_softmax(scores: Tensor, index: Tensor, num_nodes: int) -> Tensor:
    """softmax of edge scores over the edges sharing a target node: (E, H) -> (E, H)."""
    # subtract each group's max first, so exp never overflows (the result is unchanged)
    top = scatter(scores, index, num_nodes, "max")[index]
    e = (scores - top).exp()
    return e / scatter(e, index, num_nodes, "sum")[index]


def add_self_loops(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Drop any existing i→i edges, then add exactly one per node (Ã = A + I)."""
    keep = edge_index[0] != edge_index[1]
    loops = torch.arange(num_nodes, device=edge_index.device).expand(2, num_nodes)
    return torch.cat([edge_index[:, keep], loops], dim=1)


def dense_adjacency(edge_index: Tensor, num_nodes: int) -> Tensor:
    """A[i, j] = number of edges j → i (row = target, so A @ x sums each node's incoming)."""
    a = torch.zeros(num_nodes, num_nodes)
    return a.index_put_((edge_index[1], edge_index[0]), torch.ones(edge_index.size(1)), accumulate=True)


def gcn_norm(edge_index: Tensor, num_nodes: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor, Tensor]:
    """Edges of Ã = A + I and their weights 1/√(d̃_i d̃_j) (the entries of D̃^{-½} Ã D̃^{-½})."""
    src, dst = add_self_loops(edge_index, num_nodes)
    deg = scatter(torch.ones(dst.numel(), dtype=dtype, device=dst.device), dst, num_nodes)   # d̃_i (N,)
    return src, dst, deg.rsqrt()[src] * deg.rsqrt()[dst]                                     # (E,)


# ---- the layers ---------------------------------------------------------------------------------

class GCNConv(nn.Module):
    """Graph convolution (Kipf & Welling 2017, eq. 2):  X' = D̃^{-½} Ã D̃^{-½} X W + b,
    Ã = A + I (self loops), D̃_ii = Σ_j Ã_ij.  Per edge: m_ij = x_j W / √(d̃_i d̃_j), summed."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True):
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None

    def forward(self, x: Tensor, edge_index: Tensor, dense: bool = False) -> Tensor:
        check_graph(x, edge_index)
        n = x.size(0)
        h = self.lin(x)                                                   # (N, out)
        edges = add_self_loops(edge_index, n)
        if dense:  # the closed form with N×N matrices
            a = dense_adjacency(edges, n)
            d = a.sum(1).rsqrt()
            out = d[:, None] * a * d[None, :] @ h
        else:
            src, dst, norm = gcn_norm(edge_index, n, h.dtype)            # norm: 1/√(d̃_i d̃_j) (E,)
            out = scatter(norm[:, None] * h[src], dst, n)                 # gather, weigh, sum
        return out if self.bias is None else out + self.bias


class GATConv(nn.Module):
    """Graph attention (Veličković et al. 2018, eqs. 1-5), H heads of C channels:

        e_ij = LeakyReLU(a_dstᵀ W x_i + a_srcᵀ W x_j)        (eq. 1 with a = [a_dst ‖ a_src])
        α_ij = softmax_j(e_ij) over j ∈ N(i) ∪ {i}            (eq. 2)
        x_i' = ‖_h Σ_j α_ij^h W^h x_j    (concat; the mean over heads when concat=False, eq. 6)"""

    def __init__(self, in_dim: int, out_dim: int, heads: int = 1, concat: bool = True,
                 negative_slope: float = 0.2, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.heads, self.out_dim, self.concat = heads, out_dim, concat
        self.negative_slope, self.dropout = negative_slope, dropout
        self.lin = nn.Linear(in_dim, heads * out_dim, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, heads, out_dim))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out_dim))
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)
        self.bias = nn.Parameter(torch.zeros(heads * out_dim if concat else out_dim)) if bias else None

    def forward(self, x: Tensor, edge_index: Tensor, dense: bool = False,
                return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        check_graph(x, edge_index)
        n, H, C = x.size(0), self.heads, self.out_dim
        h = self.lin(x).view(n, H, C)                                     # (N, H, C)
        s_src, s_dst = (h * self.att_src).sum(-1), (h * self.att_dst).sum(-1)   # (N, H)
        edges = add_self_loops(edge_index, n)
        src, dst = edges
        if dense:  # scores for every pair (H, N_dst, N_src); + log A_ij masks non-edges (log 0 = -inf)
            a = dense_adjacency(edges, n)                                 # and counts repeated edges
            e = F.leaky_relu(s_dst.T[:, :, None] + s_src.T[:, None, :], self.negative_slope)
            att = (e + a.log()).softmax(-1)
            att = F.dropout(att, self.dropout, self.training)
            out = (att @ h.transpose(0, 1)).transpose(0, 1)               # (N, H, C)
            alpha = att[:, dst, src].T                                    # (E, H)
        else:
            e = F.leaky_relu(s_dst[dst] + s_src[src], self.negative_slope)    # (E, H)
            alpha = scatter_softmax(e, dst, n)                                # (E, H)
            a = F.dropout(alpha, self.dropout, self.training)
            out = scatter(a[..., None] * h[src], dst, n)                      # (N, H, C)
        out = out.reshape(n, H * C) if self.concat else out.mean(1)
        if self.bias is not None:
            out = out + self.bias
        return (out, edges, alpha) if return_attention else out


class SAGEConv(nn.Module):
    """GraphSAGE (Hamilton et al. 2017, Alg. 1 lines 4-5, with torch_geometric's split weights):

        x_i' = W_l · AGG({x_j : j ∈ N(i)}) + W_r · x_i,   AGG = mean | max

    (the paper's W·[x_i ‖ AGG] is the same map with W = [W_r W_l]). No self loops: the node's
    own features enter through W_r. Neighbour sampling happens outside (`sample_neighbours`)."""

    def __init__(self, in_dim: int, out_dim: int, aggr: str = "mean", bias: bool = True):
        super().__init__()
        if aggr not in ("mean", "max", "sum"):
            raise ValueError(f"aggr={aggr!r}; valid: mean, max, sum")
        self.aggr = aggr
        self.lin_l = nn.Linear(in_dim, out_dim, bias=bias)
        self.lin_r = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: Tensor, edge_index: Tensor, dense: bool = False) -> Tensor:
        check_graph(x, edge_index)
        n = x.size(0)
        src, dst = edge_index
        if dense:
            a = dense_adjacency(edge_index, n)                           # (N, N) counts
            if self.aggr == "max":
                cand = x[None, :, :].masked_fill((a == 0)[:, :, None], float("-inf")).amax(1)
                agg = cand.masked_fill(a.sum(1, keepdim=True) == 0, 0.0)
            else:
                agg = a @ x
                if self.aggr == "mean":
                    agg = agg / a.sum(1, keepdim=True).clamp(min=1)
        else:
            agg = scatter(x[src], dst, n, self.aggr)                     # (N, F)
        return self.lin_l(agg) + self.lin_r(x)


def sample_neighbours(edge_index: Tensor, num_nodes: int, k: int,
                      generator: torch.Generator | None = None) -> Tensor:
    """Keep at most k incoming edges per node, chosen uniformly (GraphSAGE's fixed-size sample).

    Each edge gets a random key; an edge survives when it ranks < k among its target's edges."""
    if k < 1:
        raise ValueError(f"k={k}: sample at least one neighbour per node")
    dst = edge_index[1]
    key = torch.rand(dst.numel(), generator=generator)
    order = torch.argsort(dst.double() * 2 + key.double())                # by target, random within
    sorted_dst = dst[order]
    first = torch.searchsorted(sorted_dst, sorted_dst, right=False)       # start of each group
    rank = torch.arange(dst.numel()) - first
    return edge_index[:, order[rank < k]]


def global_pool(x: Tensor, batch: Tensor, num_graphs: int, reduce: str = "mean") -> Tensor:
    """Graph-level readout h_G = ⊕_{i ∈ G} x_i: (N, F) nodes, batch (N,) graph ids -> (G, F)."""
    return scatter(x, batch, num_graphs, reduce)


# ---- a stack of layers ------------------------------------------------------------------------

LAYERS = {"gcn": GCNConv, "gat": GATConv, "sage": SAGEConv}


class GNN(nn.Module):
    """`layers` message-passing layers with ReLU and dropout between them; node logits, or
    graph logits after a readout when `readout` is set (mean | max | sum)."""

    def __init__(self, kind: str, in_dim: int, hidden: int, out_dim: int, layers: int = 2,
                 dropout: float = 0.5, heads: int = 4, readout: str | None = None, aggr: str = "mean"):
        super().__init__()
        if kind not in LAYERS and kind != "mlp":
            raise ValueError(f"kind={kind!r}; valid: {', '.join(LAYERS)}, mlp")
        if layers < 1:
            raise ValueError(f"layers={layers}: need at least one")
        self.kind, self.dropout, self.readout = kind, dropout, readout
        dims = [in_dim] + [hidden] * (layers - 1) + ([hidden] if readout else [out_dim])
        self.convs = nn.ModuleList()
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == len(dims) - 2 and not readout
            if kind == "gat":  # hidden layers concatenate heads of hidden/heads channels each
                conv = GATConv(a, b, heads=1, concat=False) if last else GATConv(a, b // heads, heads)
            elif kind == "sage":
                conv = SAGEConv(a, b, aggr=aggr)
            elif kind == "gcn":
                conv = GCNConv(a, b)
            else:
                conv = nn.Linear(a, b)
            self.convs.append(conv)
        self.head = nn.Linear(hidden, out_dim) if readout else None

    def embed(self, x: Tensor, edge_index: Tensor) -> list[Tensor]:
        """Node features after each layer (the last without its nonlinearity when no readout)."""
        outs = []
        for i, conv in enumerate(self.convs):
            x = F.dropout(x, self.dropout, self.training)
            x = conv(x) if self.kind == "mlp" else conv(x, edge_index)
            if i < len(self.convs) - 1 or self.readout:
                x = F.relu(x)
            outs.append(x)
        return outs

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None,
                num_graphs: int | None = None) -> Tensor:
        h = self.embed(x, edge_index)[-1]
        if not self.readout:
            return h                                                       # (N, classes)
        if batch is None:
            batch, num_graphs = torch.zeros(x.size(0), dtype=torch.long), 1
        return self.head(global_pool(h, batch, num_graphs, self.readout))  # (G, classes)
