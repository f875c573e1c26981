"""L4 (b): the real all-MiniLM-L6-v2 in our BERT — equal to transformers, and semantic search
over Jane Austen's paragraphs.

1. Parity: our WordPiece ids equal HF's tokenizer's, and our mean-pooled, L2-normalised
   sentence embeddings equal transformers' BertModel + sentence-transformers' Pooling/Normalize
   (computed here from the package's config files) on real paragraphs (max |Δ| ≤ 1e-5).
2. Paraphrases (written for this experiment, Austen-flavoured): each sentence's paraphrase is
   its most similar sentence among all the others.
3. Search, measured: each of n Austen paragraphs (40–160 words, drawn evenly from the six
   novels) is cut in two halves at a word midpoint; the first half is the query, the second
   halves are the collection. Recall@k = the share of queries whose own second half is among
   the top k by cosine similarity (chance: k/n). TF-IDF cosine (lexical) is reported beside it.
   A few hand-written queries and their best paragraph are written to search.md.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run

PARAPHRASES = [
    ("She refused his offer of marriage.", "She turned down his proposal."),
    ("The weather was cold and wet all week.", "It rained and was chilly for days."),
    ("He was the richest man in the county.", "Nobody in the district had a larger fortune than he."),
    ("They danced together twice at the ball.", "At the dance he asked her for two sets."),
    ("Her mother talked of nothing but weddings.", "Marriage was her mother's only subject of conversation."),
    ("The letter brought very bad news.", "What the letter said was dreadful."),
    ("He walked to the village every morning.", "Each day at dawn he went on foot into the town."),
    ("She was too proud to admit her mistake.", "Her pride kept her from confessing she had been wrong."),
]
QUERIES = ["a proposal of marriage is refused", "the officers of the militia in town",
           "a carriage arrives at the great house", "she reads a letter again and again",
           "an illness and a doctor is called"]


@dataclass
class Config:
    paragraphs: int = 600        # search collection size (each paragraph gives a query and a target)
    parity_texts: int = 64       # paragraphs compared with transformers
    min_words: int = 40
    max_words: int = 160
    batch_size: int = 32
    parity_atol: float = 1e-5
    min_recall_over_chance: float = 10.0   # recall@1 ≥ this × chance (1/n)
    seed: int = 0


def austen_paragraphs(min_words: int, max_words: int) -> list[tuple[str, str]]:
    """(novel, paragraph) for every paragraph of min..max words, whitespace normalised."""
    from deepatlas.data.austen import austen_texts

    out = []
    for title, text in austen_texts().items():
        for p in text.split("\n\n"):
            words = p.split()
            if min_words <= len(words) <= max_words and not p.lstrip().upper().startswith("CHAPTER"):
                out.append((title, " ".join(words)))
    return out


def sample_evenly(paras: list[tuple[str, str]], n: int, seed: int) -> list[tuple[str, str]]:
    """n paragraphs, as many from each novel as possible, in a seeded random order."""
    rng = random.Random(seed)
    by_novel: dict[str, list] = {}
    for p in paras:
        by_novel.setdefault(p[0], []).append(p)
    per = -(-n // len(by_novel))
    picked = [p for group in by_novel.values() for p in rng.sample(group, min(per, len(group)))]
    rng.shuffle(picked)
    return picked[:n]


def halves(text: str) -> tuple[str, str]:
    words = text.split()
    return " ".join(words[:len(words) // 2]), " ".join(words[len(words) // 2:])


def recall_at(sims: torch.Tensor, k: int) -> float:
    """sims (n, n): row i = query i vs every target; the right target of query i is i."""
    top = sims.topk(k, dim=1).indices
    return float((top == torch.arange(sims.size(0))[:, None]).any(dim=1).float().mean())


def tfidf_similarities(queries: list[str], targets: list[str]) -> torch.Tensor:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(lowercase=True).fit(queries + targets)
    q, t = vec.transform(queries), vec.transform(targets)     # rows are L2-normalised
    return torch.tensor((q @ t.T).toarray())


def transformers_reference(folder, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (ids, embeddings) the way sentence-transformers computes them, from transformers."""
    import transformers

    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    max_len = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
    if not pooling["pooling_mode_mean_tokens"]:
        raise ValueError(f"expected mean pooling in {folder}, got {pooling}")
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    model = transformers.AutoModel.from_pretrained(str(folder)).eval()
    b = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    with torch.no_grad():
        h = model(**b).last_hidden_state
    m = b["attention_mask"].unsqueeze(-1).float()
    return b["input_ids"], F.normalize((h * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=1)


@experiment("L4", "minilm-search",
            claim="the real all-MiniLM-L6-v2 loads into our BERT through our WordPiece with ids equal to "
                  "HF's and sentence embeddings equal to transformers + sentence-transformers pooling "
                  "(max |Δ| ≤ 1e-5); every paraphrase is its sentence's nearest neighbour, and half an "
                  "Austen paragraph retrieves the other half at recall@1 ≥ 10× chance",
            config=Config, quick={"paragraphs": 60, "parity_texts": 12},
            headline={"embedding_max_abs_diff": ("max |Δ| vs transformers", "{:.1e}"),
                      "recall_at_1": ("recall@1", "{:.1%}"),
                      "tfidf_recall_at_1": ("TF-IDF recall@1", "{:.1%}")})
def minilm_search(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepatlas.models.sentence_encoder import cosine_matrix, load_minilm, minilm_dir

    enc = load_minilm()
    paras = sample_evenly(austen_paragraphs(cfg.min_words, cfg.max_words), cfg.paragraphs, cfg.seed)
    if len(paras) < 10:
        raise ValueError(f"only {len(paras)} paragraphs of {cfg.min_words}..{cfg.max_words} words")

    # 1. parity with transformers on real paragraphs (and the paraphrase sentences)
    parity = [p for _, p in paras[:cfg.parity_texts]] + [s for pair in PARAPHRASES for s in pair]
    ref_ids, ref_emb = transformers_reference(minilm_dir(), parity)
    ids, _ = enc.batch(parity)
    ids_equal = ids.shape == ref_ids.shape and bool(torch.equal(ids, ref_ids))
    ours = enc.encode(parity, cfg.batch_size)
    diff = float((ours - ref_emb).abs().max())
    run.print(f"parity on {len(parity)} texts: ids equal {ids_equal}, embeddings max |Δ| {diff:.2e}")

    # 2. paraphrases: nearest neighbour of each sentence among the other 2·8 − 1
    e = ours[cfg.parity_texts:] if len(parity) > len(PARAPHRASES) * 2 else ours
    sims = cosine_matrix(e).fill_diagonal_(-2.0)
    partner = torch.arange(len(e)) ^ 1                              # 2i <-> 2i + 1
    para_hits = (sims.argmax(dim=1) == partner).float().mean().item()
    margins = sims[torch.arange(len(e)), partner] - sims.scatter(1, partner[:, None], -2.0).max(dim=1).values
    run.print(f"paraphrases: {para_hits:.0%} nearest, smallest margin {float(margins.min()):.3f}")

    # 3. half-paragraph retrieval
    first, second = zip(*(halves(p) for _, p in paras))
    t0 = time.perf_counter()
    q_emb, t_emb = enc.encode(list(first), cfg.batch_size), enc.encode(list(second), cfg.batch_size)
    seconds = time.perf_counter() - t0
    sims = q_emb @ t_emb.T                                          # unit vectors: cosine
    lexical = tfidf_similarities(list(first), list(second))
    n = len(paras)
    metrics = {"ids_equal": ids_equal, "embedding_max_abs_diff": diff, "parity_texts": len(parity),
               "paraphrase_nearest": para_hits, "paraphrase_min_margin": round(float(margins.min()), 4),
               "paragraphs": n, "chance_at_1": round(1 / n, 5),
               "recall_at_1": recall_at(sims, 1), "recall_at_5": recall_at(sims, 5),
               "tfidf_recall_at_1": recall_at(lexical, 1), "tfidf_recall_at_5": recall_at(lexical, 5),
               "texts_per_s": round(2 * n / seconds, 1)}
    run.log(**{k: v for k, v in metrics.items() if not isinstance(v, bool)})
    run.print(f"search over {n} halves: recall@1 {metrics['recall_at_1']:.3f} (TF-IDF "
              f"{metrics['tfidf_recall_at_1']:.3f}, chance {1 / n:.4f}), {metrics['texts_per_s']} texts/s")

    # hand-written queries: the best paragraph of the collection for each
    whole = enc.encode([p for _, p in paras], cfg.batch_size)
    lines = ["| query | score | novel | best paragraph (start) |", "|---|---|---|---|"]
    hits = {}
    for query, row in zip(QUERIES, enc.encode(QUERIES) @ whole.T):
        i = int(row.argmax())
        lines.append(f"| {query} | {float(row[i]):.3f} | {paras[i][0]} | {paras[i][1][:160]}… |")
        hits[query] = f"{float(row[i]):.3f} {paras[i][0]}: {paras[i][1][:120]}…"
    metrics["queries"] = hits
    (run.dir / "search.md").write_text("\n".join(lines) + "\n")
    run.print("\n".join(lines))

    fig, ax = plt.subplots(figsize=(7, 4))
    ks = [1, 2, 5, 10, 20]
    ax.plot(ks, [recall_at(sims, k) for k in ks], "o-", label="MiniLM (ours)")
    ax.plot(ks, [recall_at(lexical, k) for k in ks], "s--", label="TF-IDF")
    ax.plot(ks, [k / n for k in ks], ":", color="gray", label="chance")
    ax.set(xscale="log", xlabel="k", ylabel="recall@k", ylim=(0, 1.02),
           title=f"half a paragraph finds the other half ({n} Austen paragraphs)")
    ax.legend()
    run.savefig(fig, "recall_at_k")

    held = (ids_equal and diff <= cfg.parity_atol and para_hits == 1.0
            and metrics["recall_at_1"] >= cfg.min_recall_over_chance / n)
    return Verdict(held=held, metrics=metrics,
                   notes=f"embeddings equal transformers' to {diff:.1e}; recall@1 {metrics['recall_at_1']:.1%} "
                         f"vs TF-IDF {metrics['tfidf_recall_at_1']:.1%} and chance {1 / n:.2%}")
