"""M4: graph neural networks learn from structure that node features alone do not carry.

Three experiments on message passing (deepatlas.models.gnn, equal to torch_geometric's layers):

gnn-node-classification — a stochastic block model (Holland et al. 1983): 4 communities, edges
  dense inside and sparse across, node features = a weak class signal in heavy noise. Every node
  of a community has most neighbours in the same community, so averaging over neighbours
  (GCN, GAT, GraphSAGE) raises the signal-to-noise ratio about √degree-fold; a feature-only
  MLP cannot. Also Zachary's karate club (networkx): two labelled nodes (the two leaders),
  one-hot identity features, predict which club each of the other 32 members joined
  (the semi-supervised setting of Kipf & Welling 2017, §6).
gnn-graph-classification — Erdős–Rényi, Barabási–Albert and Watts–Strogatz graphs of the same
  size and mean degree, featureless (every node feature is 1). A sum aggregator counts
  neighbours and tells the families apart; mean and max aggregators (GraphSAGE-mean/max, GAT)
  see the same vector at every node and stay at chance (Xu et al. 2019, "How powerful are GNNs",
  §5, Fig. 2), as does a readout without message passing.
gnn-oversmoothing — repeated neighbour averaging Â^K X drives all node features to one direction
  (Li et al. 2018, Thm. 1; Oono & Suzuki 2020): the features' mean pairwise cosine similarity
  tends to 1 and a linear classifier on them (SGC, Wu et al. 2019) first gains from smoothing,
  then loses; trained GCNs deeper than a few layers lose accuracy too.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.core.train import TrainConfig, train
from deepatlas.models.gnn import GNN, gcn_norm, scatter


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _edges(graph) -> torch.Tensor:
    """networkx graph -> (2, 2|E|) edge_index with both directions."""
    e = torch.tensor(list(graph.edges()), dtype=torch.long).T
    return torch.cat([e, e.flip(0)], 1)


@dataclass
class SBM:
    blocks: int = 4
    block_size: int = 100
    p_in: float = 0.08
    p_out: float = 0.005
    features: int = 16
    signal: float = 0.6           # class-mean shift in units of the noise std
    train_per_class: int = 20


def make_sbm(cfg: SBM, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (N, F), edge_index, labels (N,), train mask (N,) of a stochastic block model."""
    import networkx as nx

    g = nx.stochastic_block_model([cfg.block_size] * cfg.blocks,
                                  [[cfg.p_in if a == b else cfg.p_out for b in range(cfg.blocks)]
                                   for a in range(cfg.blocks)], seed=seed)
    y = torch.arange(cfg.blocks).repeat_interleave(cfg.block_size)
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(cfg.blocks, cfg.features, generator=gen)
    means = cfg.signal * means / means.norm(dim=1, keepdim=True) * cfg.features ** 0.5 / 2
    x = means[y] + torch.randn(len(y), cfg.features, generator=gen)
    mask = torch.zeros(len(y), dtype=torch.bool)
    for c in range(cfg.blocks):
        idx = (y == c).nonzero().flatten()
        mask[idx[torch.randperm(len(idx), generator=gen)[:cfg.train_per_class]]] = True
    return x, _edges(g), y, mask


def _spread(metrics: dict, key: str, values: list[float]) -> None:
    """metrics[key] = the mean over seeds, key_min / key_max the range."""
    metrics[key] = float(np.mean(values))
    metrics[f"{key}_min"], metrics[f"{key}_max"] = float(min(values)), float(max(values))


def fit_nodes(kind: str, x, edge_index, y, mask, steps: int, seed: int, layers: int = 2,
              hidden: int = 16, dropout: float = 0.5, lr: float = 0.01) -> tuple[GNN, float]:
    """Full-batch semi-supervised training on the masked nodes; accuracy on the others."""
    torch.manual_seed(seed)
    model = GNN(kind, x.size(1), hidden, int(y.max()) + 1, layers=layers, dropout=dropout)
    loss_fn = lambda m, _: F.cross_entropy(m(x, edge_index)[mask], y[mask])
    train(model, loss_fn, lambda step, micro: None,
          TrainConfig(steps=steps, lr=lr, optimizer="adam", weight_decay=5e-4, schedule="constant",
                      clip=0.0, progress=False, seed=seed))
    model.eval()
    with torch.no_grad():
        acc = (model(x, edge_index).argmax(1) == y)[~mask].float().mean().item()
    return model, acc


KINDS = ("mlp", "gcn", "gat", "sage")


@dataclass
class NodeConfig:
    sbm: SBM = field(default_factory=SBM)
    seeds: int = 5
    steps: int = 200
    karate_inits: int = 10
    min_gain: float = 0.2          # every GNN beats the MLP on the SBM by this much (mean over seeds)
    min_karate: float = 0.8        # GCN's accuracy on the 32 unlabelled karate members


@experiment("M4", "gnn-node-classification",
            claim="on stochastic-block-model graphs whose node features carry only a weak class signal, GCN, GAT "
                  "and GraphSAGE (ours, equal to torch_geometric) beat a feature-only MLP by ≥20 points; on "
                  "Zachary's karate club, GCN from 2 labelled leaders assigns ≥80% of the 32 others to their club",
            config=NodeConfig, quick={"seeds": 2, "steps": 100, "karate_inits": 3}, one_thread=True,
            headline={"acc_gcn": ("GCN on SBM", "{:.1%}"), "acc_mlp": ("feature-only MLP", "{:.1%}"),
                      "karate_gcn": ("karate club, GCN", "{:.1%}")})
def gnn_node_classification(cfg: NodeConfig, run: Run) -> Verdict:
    import networkx as nx

    accs = {k: [] for k in KINDS}
    for seed in range(cfg.seeds):
        x, ei, y, mask = make_sbm(cfg.sbm, seed)
        for kind in KINDS:
            accs[kind].append(fit_nodes(kind, x, ei, y, mask, cfg.steps, seed)[1])
        run.log(seed=seed, **{f"acc_{k}": v[-1] for k, v in accs.items()})
        run.print(f"SBM seed {seed}: " + ", ".join(f"{k} {v[-1]:.1%}" for k, v in accs.items()))

    # karate club: features = identity, labels = the club each member joined after the split
    g = nx.karate_club_graph()
    y = torch.tensor([int(g.nodes[i]["club"] != "Mr. Hi") for i in g.nodes])
    x, ei = torch.eye(len(y)), _edges(g)
    mask = torch.zeros(len(y), dtype=torch.bool)
    mask[[0, 33]] = True           # the instructor (Mr. Hi) and the administrator (Officer)
    karate = {k: [fit_nodes(k, x, ei, y, mask, cfg.steps, s, dropout=0.0)[1] for s in range(cfg.karate_inits)]
              for k in KINDS}
    run.print("karate club (32 unlabelled): " + ", ".join(f"{k} {np.mean(v):.1%}" for k, v in karate.items()))

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, res, title in ((axes[0], accs, f"SBM, {cfg.seeds} seeds"), (axes[1], karate, "karate club")):
        means = [np.mean(res[k]) for k in KINDS]
        ax.bar(KINDS, means, color=["gray", "C0", "C1", "C2"])
        for i, k in enumerate(KINDS):
            ax.plot([i] * len(res[k]), res[k], "k.", ms=4)
        ax.set(title=title, ylabel="test accuracy", ylim=(0, 1))
        ax.axhline(1 / (cfg.sbm.blocks if res is accs else 2), ls=":", c="k")
    run.savefig(fig, "accuracy")

    metrics = {}
    for k in KINDS:
        _spread(metrics, f"acc_{k}", accs[k])
        metrics[f"karate_{k}"] = float(np.mean(karate[k]))
    gains = {k: metrics[f"acc_{k}"] - metrics["acc_mlp"] for k in ("gcn", "gat", "sage")}
    metrics.update({f"gain_{k}": v for k, v in gains.items()})
    held = min(gains.values()) >= cfg.min_gain and metrics["karate_gcn"] >= cfg.min_karate
    return Verdict(held, metrics, notes=f"smallest GNN gain over the MLP {min(gains.values()):+.1%} "
                   f"(bar {cfg.min_gain:.0%}); karate GCN {metrics['karate_gcn']:.1%}, MLP {metrics['karate_mlp']:.1%}")


# ---- graph classification -----------------------------------------------------------------------

FAMILIES = ("Erdős–Rényi", "Barabási–Albert", "Watts–Strogatz")


def make_family_graph(family: int, n: int, seed: int):
    """One graph of n nodes and mean degree ≈ 4 from family 0, 1 or 2."""
    import networkx as nx

    if family == 0:  # resampled until connected, as the other two families always are (an isolated
        # node would let even a mean aggregator see something: its empty neighbourhood aggregates to 0)
        g = nx.gnp_random_graph(n, 4 / (n - 1), seed=seed)
        while not nx.is_connected(g):
            seed += 7919
            g = nx.gnp_random_graph(n, 4 / (n - 1), seed=seed)
        return g
    if family == 1:
        return nx.barabasi_albert_graph(n, 2, seed=seed)
    return nx.connected_watts_strogatz_graph(n, 4, 0.1, seed=seed)


def batch_graphs(graphs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Many graphs as one disconnected graph: constant features (N, 1), edge_index, batch ids (N,)."""
    edges, batch, offset = [], [], 0
    for i, g in enumerate(graphs):
        if g.number_of_edges():
            edges.append(_edges(g) + offset)
        batch.append(torch.full((g.number_of_nodes(),), i))
        offset += g.number_of_nodes()
    return torch.ones(offset, 1), torch.cat(edges, 1), torch.cat(batch)


@dataclass
class GraphConfig:
    graphs_per_family: int = 60      # train; as many again for test
    min_nodes: int = 20
    max_nodes: int = 40
    steps: int = 200
    seeds: int = 3
    min_acc: float = 0.85            # sum-aggregating GNN on held-out graphs
    max_mean_acc: float = 0.45       # mean/max aggregators stay near chance (1/3)


GRAPH_MODELS = {"GCN": ("gcn", "mean"), "SAGE-sum": ("sage", "sum"), "SAGE-mean": ("sage", "mean"),
                "SAGE-max": ("sage", "max"), "GAT": ("gat", "mean"), "no message passing": ("mlp", "mean")}


@experiment("M4", "gnn-graph-classification",
            claim="on featureless Erdős–Rényi / Barabási–Albert / Watts–Strogatz graphs of equal size and mean "
                  "degree, a sum-aggregating GNN classifies ≥85% of held-out graphs, while mean and max "
                  "aggregators (GraphSAGE-mean/max, GAT) and a readout without message passing stay near chance (≤45%)",
            config=GraphConfig, quick={"graphs_per_family": 30, "steps": 100, "seeds": 1}, one_thread=True,
            headline={"acc_SAGE-sum": ("sum aggregator", "{:.1%}"), "acc_SAGE-mean": ("mean aggregator", "{:.1%}"),
                      "acc_GCN": ("GCN", "{:.1%}")})
def gnn_graph_classification(cfg: GraphConfig, run: Run) -> Verdict:
    rng = np.random.default_rng(0)
    sets = {}
    for split, base in (("train", 0), ("test", 10 ** 6)):
        spec = [(f, int(rng.integers(cfg.min_nodes, cfg.max_nodes + 1)), base + 3 * i + f)
                for i in range(cfg.graphs_per_family) for f in range(3)]
        x, ei, batch = batch_graphs([make_family_graph(f, n, s) for f, n, s in spec])
        sets[split] = (x, ei, batch, torch.tensor([f for f, _, _ in spec]))
    x, ei, batch, y = sets["train"]
    xt, eit, batcht, yt = sets["test"]
    accs = {name: [] for name in GRAPH_MODELS}
    for seed in range(cfg.seeds):
        for name, (kind, aggr) in GRAPH_MODELS.items():
            torch.manual_seed(seed)
            model = GNN(kind, 1, 32, 3, layers=3, dropout=0.0, readout="mean", aggr=aggr)
            loss_fn = lambda m, _: F.cross_entropy(m(x, ei, batch, len(y)), y)
            res = train(model, loss_fn, lambda step, micro: None,
                        TrainConfig(steps=cfg.steps, lr=0.01, optimizer="adam", schedule="cosine",
                                    clip=1.0, progress=False, seed=seed))
            model.eval()
            with torch.no_grad():
                accs[name].append((model(xt, eit, batcht, len(yt)).argmax(1) == yt).float().mean().item())
            run.log(seed=seed, model=name, test_acc=accs[name][-1], final_loss=res.losses[-1])
        run.print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.1%}" for k, v in accs.items()))

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(GRAPH_MODELS)
    ax.bar(range(len(names)), [np.mean(accs[n]) for n in names], color=[f"C{i}" for i in range(len(names))])
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.axhline(1 / 3, ls=":", c="k", label="chance")
    ax.set(ylabel="held-out accuracy", ylim=(0, 1), title="which random-graph family? (no node features)")
    ax.legend()
    run.savefig(fig, "accuracy")

    metrics = {}
    for n in names:
        _spread(metrics, f"acc_{n}", accs[n])
    blind = max(metrics[f"acc_{n}"] for n in ("SAGE-mean", "SAGE-max", "GAT", "no message passing"))
    held = metrics["acc_SAGE-sum"] >= cfg.min_acc and blind <= cfg.max_mean_acc
    return Verdict(held, metrics, notes=f"sum aggregator {metrics['acc_SAGE-sum']:.1%} (bar {cfg.min_acc:.0%}); "
                   f"best mean/max/no-message model {blind:.1%} (bar ≤ {cfg.max_mean_acc:.0%})")


# ---- over-smoothing -------------------------------------------------------------------------------

def mean_cosine(h: torch.Tensor) -> float:
    """Mean cosine similarity over all pairs of distinct rows."""
    u = F.normalize(h, dim=1)
    s = u @ u.T
    n = h.size(0)
    return ((s.sum() - s.diagonal().sum()) / (n * (n - 1))).item()


def propagate(x: torch.Tensor, edge_index: torch.Tensor, k: int) -> list[torch.Tensor]:
    """[X, ÂX, Â²X, …, Â^k X] with Â = D̃^{-½}(A+I)D̃^{-½}, the GCN layer without weights."""
    src, dst, norm = gcn_norm(edge_index, x.size(0), x.dtype)
    out = [x]
    for _ in range(k):
        out.append(scatter(norm[:, None] * out[-1][src], dst, x.size(0)))
    return out


@dataclass
class SmoothConfig:
    sbm: SBM = field(default_factory=lambda: SBM(signal=1.0))
    powers: tuple[int, ...] = (0, 1, 2, 4, 8, 16, 32, 64, 128)
    depths: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    seeds: int = 3
    steps: int = 200


@experiment("M4", "gnn-oversmoothing",
            claim="repeated GCN propagation over-smooths: the mean cosine similarity of Â^K X rises towards 1 "
                  "with K, a linear classifier on Â^K X peaks at small K and then drops by ≥20 points, "
                  "and a trained GCN of the largest depth is ≥20 points below the best depth",
            config=SmoothConfig, quick={"powers": "0,2,8,64", "depths": "2,16", "seeds": 1, "steps": 120},
            one_thread=True,
            headline={"sgc_best_acc": ("best Â^K X linear", "{:.1%}"), "sgc_last_acc": ("largest K", "{:.1%}"),
                      "gcn_last_acc": ("deepest GCN", "{:.1%}")})
def gnn_oversmoothing(cfg: SmoothConfig, run: Run) -> Verdict:
    from sklearn.linear_model import LogisticRegression

    sgc = {k: [] for k in cfg.powers}
    cos = {k: [] for k in cfg.powers}
    deep = {d: [] for d in cfg.depths}
    for seed in range(cfg.seeds):
        x, ei, y, mask = make_sbm(cfg.sbm, seed)
        feats = propagate(x.double(), ei, max(cfg.powers))
        for k in cfg.powers:
            h = feats[k]
            cos[k].append(mean_cosine(h))
            # standardised features, so only their direction pattern matters, not their shrinking scale
            z = ((h - h.mean(0)) / h.std(0).clamp(min=1e-300)).numpy()
            clf = LogisticRegression(max_iter=2000).fit(z[mask.numpy()], y[mask].numpy())
            sgc[k].append(float(clf.score(z[~mask.numpy()], y[~mask].numpy())))
            run.log(seed=seed, power=k, cosine=cos[k][-1], linear_acc=sgc[k][-1])
        for d in cfg.depths:
            deep[d].append(fit_nodes("gcn", x, ei, y, mask, cfg.steps, seed, layers=d, dropout=0.0)[1])
            run.log(seed=seed, depth=d, gcn_acc=deep[d][-1])
        run.print(f"seed {seed}: Â^K X linear acc " + ", ".join(f"K={k} {sgc[k][-1]:.0%}" for k in cfg.powers)
                  + " | GCN depth " + ", ".join(f"{d}: {deep[d][-1]:.0%}" for d in cfg.depths))

    m = {f"sgc_acc_K{k}": float(np.mean(v)) for k, v in sgc.items()}
    m.update({f"cosine_K{k}": float(np.mean(v)) for k, v in cos.items()})
    m.update({f"gcn_acc_depth{d}": float(np.mean(v)) for d, v in deep.items()})
    best_k = max(cfg.powers, key=lambda k: m[f"sgc_acc_K{k}"])
    m.update(sgc_best_K=best_k, sgc_best_acc=m[f"sgc_acc_K{best_k}"], sgc_last_acc=m[f"sgc_acc_K{cfg.powers[-1]}"],
             gcn_best_acc=max(m[f"gcn_acc_depth{d}"] for d in cfg.depths),
             gcn_last_acc=m[f"gcn_acc_depth{cfg.depths[-1]}"],
             cosine_first=m[f"cosine_K{cfg.powers[0]}"], cosine_last=m[f"cosine_K{cfg.powers[-1]}"])

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ks = [max(k, 0.5) for k in cfg.powers]
    axes[0].semilogx(ks, [m[f"sgc_acc_K{k}"] for k in cfg.powers], "o-", label="linear on Â^K X")
    axes[0].semilogx(ks, [m[f"cosine_K{k}"] for k in cfg.powers], "s--", label="mean cosine similarity")
    axes[0].set(xlabel="K (K=0 plotted at 0.5)", title="smoothing without weights", ylim=(0, 1.02))
    axes[0].legend()
    axes[1].semilogx(cfg.depths, [m[f"gcn_acc_depth{d}"] for d in cfg.depths], "o-", c="C2")
    axes[1].set(xlabel="GCN layers", ylabel="test accuracy", title="trained GCN", ylim=(0, 1.02))
    run.savefig(fig, "oversmoothing")

    held = (m["cosine_last"] > 0.99 and m["cosine_last"] > m["cosine_first"] + 0.3
            and best_k > 0 and m["sgc_best_acc"] - m["sgc_last_acc"] >= 0.2
            and m["gcn_best_acc"] - m["gcn_last_acc"] >= 0.2)
    return Verdict(held, m, notes=f"linear on Â^K X: best K={best_k} {m['sgc_best_acc']:.1%} → "
                   f"K={cfg.powers[-1]} {m['sgc_last_acc']:.1%}; cosine {m['cosine_first']:.2f} → "
                   f"{m['cosine_last']:.4f}; GCN best {m['gcn_best_acc']:.1%}, deepest {m['gcn_last_acc']:.1%}")
