"""A4: words as vectors — skip-gram / CBOW with negative sampling on Jane Austen, against gensim.

Tokens: lowercase alphabetic words of the six novels (deepatlas.models.word2vec.words), the
first `corpus_words` of them (0 = all, ~730k). Models, all on the same tokens with the same
hyper-parameters (dim, window, negatives, min_count, subsampling t, epochs, lr):
  - ours: skip-gram and CBOW with negative sampling (deepatlas.models.word2vec, sparse SGD with
    the hand-written SGNS gradient);
  - gensim.models.Word2Vec (optimised C, one worker thread, as ours has one thread);
  - bag of words: each word as its TF-IDF row over the paragraphs (count-based vectors).
Analogies: ANALOGIES below, written for this corpus — for each relation (gender, past tense,
plural), a list of word pairs frequent in Austen; every ordered choice of two different pairs
(a, b), (c, d) gives the question a : b :: c : d. Questions with a word under min_count are
dropped. Answered by 3CosAdd over the whole vocabulary (a, b, c excluded), for every model alike.
Nearest neighbours of a fixed word list are written to neighbours.md.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from deepatlas.core.registry import Verdict, experiment
from deepatlas.core.runs import Run
from deepatlas.models.word2vec import (Vocab, Word2Vec, Word2VecConfig, analogy_accuracy, bag_of_words_vectors,
                                       nearest, words)

ANALOGIES = {
    "gender": [("he", "she"), ("himself", "herself"), ("man", "woman"), ("men", "women"), ("mr", "mrs"),
               ("brother", "sister"), ("brothers", "sisters"), ("father", "mother"), ("son", "daughter"),
               ("husband", "wife"), ("uncle", "aunt"), ("nephew", "niece"), ("boy", "girl"),
               ("gentleman", "lady"), ("gentlemen", "ladies"), ("sons", "daughters")],
    "past tense": [("say", "said"), ("go", "went"), ("come", "came"), ("know", "knew"), ("think", "thought"),
                   ("see", "saw"), ("take", "took"), ("give", "gave"), ("find", "found"), ("feel", "felt"),
                   ("tell", "told"), ("speak", "spoke"), ("write", "wrote"), ("hear", "heard"),
                   ("leave", "left"), ("bring", "brought"), ("sit", "sat"), ("stand", "stood"),
                   ("begin", "began"), ("get", "got")],
    "plural": [("letter", "letters"), ("day", "days"), ("friend", "friends"), ("house", "houses"),
               ("eye", "eyes"), ("hand", "hands"), ("word", "words"), ("child", "children"),
               ("thing", "things"), ("year", "years"), ("hour", "hours"), ("room", "rooms"),
               ("feeling", "feelings"), ("walk", "walks")],
}
PROBES = ["elizabeth", "darcy", "sister", "letter", "happy", "walk", "ball", "money"]


def analogy_questions() -> dict[str, list[tuple[str, str, str, str]]]:
    return {rel: [(a, b, c, d) for a, b in pairs for c, d in pairs if (a, b) != (c, d)]
            for rel, pairs in ANALOGIES.items()}


@dataclass
class Config:
    corpus_words: int = 0
    dim: int = 100
    window: int = 5
    negatives: int = 5
    min_count: int = 5
    sample: float = 1e-3
    epochs: int = 5
    lr: float = 0.025
    cbow_lr: float = 0.05               # word2vec.c's CBOW default
    batch: int = 1024
    seeds: int = 2                      # skip-gram seeds (ours and gensim each)
    cbow: bool = True                   # also CBOW, ours and gensim, first seed only
    max_gap: float = 0.05               # held: |ours − gensim| skip-gram accuracy ≤ this (seed means)
    min_over_bow: float = 0.05          # and ours ≥ bag of words + this
    seed: int = 0


def gensim_vectors(tokens: list[str], cfg: Config, sg: bool, seed: int, vocab: Vocab) -> tuple[torch.Tensor, float]:
    """gensim's vectors re-indexed to our vocabulary (same words: same min_count), and seconds."""
    from gensim.models import Word2Vec as GensimWord2Vec

    sentences = [tokens[i:i + 10_000] for i in range(0, len(tokens), 10_000)]  # gensim's max sentence
    t0 = time.perf_counter()
    model = GensimWord2Vec(sentences, vector_size=cfg.dim, window=cfg.window, negative=cfg.negatives,
                           min_count=cfg.min_count, sample=cfg.sample, epochs=cfg.epochs, sg=int(sg),
                           alpha=cfg.lr if sg else cfg.cbow_lr, min_alpha=1e-4, hs=0, workers=1, seed=seed)
    seconds = time.perf_counter() - t0
    return torch.tensor(model.wv[vocab.words]), seconds


@experiment("A4", "word2vec-analogies",
            claim="skip-gram with negative sampling written here reaches gensim's analogy accuracy on Austen "
                  "(within 5 points, same tokens and hyper-parameters, mean of the seeds) and beats "
                  "bag-of-words word vectors by ≥ 5 points; names' nearest neighbours are names",
            config=Config, one_thread=True,
            quick={"corpus_words": 250_000, "dim": 50, "epochs": 3, "seeds": 1, "cbow": False},
            headline={"ours_sg_accuracy": ("ours, skip-gram", "{:.1%}"),
                      "gensim_sg_accuracy": ("gensim, skip-gram", "{:.1%}"),
                      "bow_accuracy": ("bag of words", "{:.1%}"),
                      "sg_time_ratio": ("ours / gensim training time", "{:.1f}×")})
def word2vec_analogies(cfg: Config, run: Run) -> Verdict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepatlas.data.austen import austen_texts

    texts = list(austen_texts().values())
    tokens = words("\n\n".join(texts))
    tokens = tokens[:cfg.corpus_words] if cfg.corpus_words > 0 else tokens
    vocab = Vocab(tokens, cfg.min_count)
    ids = vocab.encode(tokens)
    questions = analogy_questions()
    all_q = [q for qs in questions.values() for q in qs]
    run.print(f"{len(tokens):,} tokens, {len(vocab):,} words with count ≥ {cfg.min_count}")

    def score(vectors: torch.Tensor) -> dict[str, float]:
        out = {rel: analogy_accuracy(vectors, vocab.index, qs)[0] for rel, qs in questions.items()}
        out["all"], out["questions"] = analogy_accuracy(vectors, vocab.index, all_q)
        return out

    results: dict[str, list[dict]] = {}
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        for sg in (True, False) if cfg.cbow and seed == cfg.seed else (True,):
            w2v_cfg = Word2VecConfig(dim=cfg.dim, window=cfg.window, negatives=cfg.negatives, min_count=cfg.min_count,
                                     sample=cfg.sample, epochs=cfg.epochs, lr=cfg.lr if sg else cfg.cbow_lr,
                                     batch=cfg.batch, sg=sg, seed=seed)
            ours = Word2Vec(vocab, w2v_cfg).fit(ids)
            ref, ref_seconds = gensim_vectors(tokens, cfg, sg, seed, vocab)
            name = "sg" if sg else "cbow"
            for who, vectors, seconds in (("ours", ours.vectors(), ours.seconds), ("gensim", ref, ref_seconds)):
                s = score(vectors) | {"seconds": seconds}
                results.setdefault(f"{who}_{name}", []).append(s)
                run.log(model=f"{who}_{name}", seed=seed, **s)
                run.print(f"seed {seed} {who:6s} {name:4s}: analogies {s['all']:.3f} "
                          f"({s['questions']} questions), {seconds:.1f} s")
            if seed == cfg.seed and sg:
                ours_sg = ours
    paragraphs = [words(p) for t in texts for p in t.split("\n\n") if p.strip()]
    bow = score(bag_of_words_vectors(paragraphs, vocab.index))
    run.print(f"bag of words over {len(paragraphs):,} paragraphs: analogies {bow['all']:.3f}")

    def mean(key: str, field: str = "all") -> float:
        return sum(r[field] for r in results[key]) / len(results[key])

    metrics = {"tokens": len(tokens), "vocab": len(vocab), "questions": bow["questions"], "seeds": cfg.seeds,
               "bow_accuracy": round(bow["all"], 4)}
    for key in results:
        metrics[f"{key}_accuracy"] = round(mean(key), 4)
        metrics[f"{key}_accuracy_min_max"] = [round(min(r["all"] for r in results[key]), 4),
                                              round(max(r["all"] for r in results[key]), 4)]
        metrics[f"{key}_seconds"] = round(mean(key, "seconds"), 2)
        for rel in questions:
            metrics[f"{key}_{rel.replace(' ', '_')}"] = round(mean(key, rel), 4)
    for rel in questions:
        metrics[f"bow_{rel.replace(' ', '_')}"] = round(bow[rel], 4)
    metrics["sg_time_ratio"] = round(metrics["ours_sg_seconds"] / metrics["gensim_sg_seconds"], 2)
    if cfg.cbow:
        metrics["cbow_time_ratio"] = round(metrics["ours_cbow_seconds"] / metrics["gensim_cbow_seconds"], 2)

    lines = ["| word | ours (skip-gram) nearest |", "|---|---|"]
    probes = [w for w in PROBES if w in vocab.index]
    for w in probes:
        nn_list = nearest(ours_sg.vectors(), vocab.index, vocab.words, w, 6)
        lines.append(f"| {w} | {', '.join(f'{v} {s:.2f}' for v, s in nn_list)} |")
    (run.dir / "neighbours.md").write_text("\n".join(lines) + "\n")
    run.print("\n".join(lines))
    metrics["neighbours"] = {w: [v for v, _ in nearest(ours_sg.vectors(), vocab.index, vocab.words, w, 6)]
                             for w in probes}
    names = {"elizabeth", "jane", "emma", "anne", "elinor", "marianne", "fanny", "catherine", "harriet",
             "darcy", "bingley", "wickham", "willoughby", "edmund", "knightley", "crawford", "tilney",
             "wentworth", "elliot", "edward", "frank", "henry", "churchill", "weston", "elton", "collins",
             "bennet", "lucy", "charlotte", "lydia", "kitty", "mary", "julia", "maria", "isabella", "john",
             "brandon", "ferrars", "dashwood", "bertram", "woodhouse", "fairfax", "musgrove", "eleanor",
             "price", "norris", "thorpe", "morland", "louisa", "henrietta", "lucas", "gardiner", "jennings",
             "palmer", "rushworth", "yates", "martin", "bates", "russell", "william", "tom", "robert", "james"}
    name_share = sum(v in names for w in ("elizabeth", "darcy") if w in metrics["neighbours"]
                     for v in metrics["neighbours"][w]) / max(1, 6 * sum(w in metrics["neighbours"]
                                                                        for w in ("elizabeth", "darcy")))
    metrics["name_neighbour_share"] = round(name_share, 3)

    fig, ax = plt.subplots(figsize=(7, 4))
    rels = list(questions) + ["all"]
    keys = [k for k in ("ours_sg", "gensim_sg", "ours_cbow", "gensim_cbow") if k in results]
    width = 0.8 / (len(keys) + 1)
    for j, key in enumerate(keys + ["bow"]):
        ys = [bow[r] for r in rels] if key == "bow" else [mean(key, r) for r in rels]
        ax.bar([i + j * width for i in range(len(rels))], ys, width, label=key.replace("_", " "))
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rels))], rels)
    ax.set(ylabel="analogy accuracy (3CosAdd)", title=f"Austen, {len(tokens):,} tokens, {bow['questions']} questions")
    ax.legend(fontsize=8)
    run.savefig(fig, "analogies")

    gap = metrics["ours_sg_accuracy"] - metrics["gensim_sg_accuracy"]
    metrics["sg_gap_to_gensim"] = round(gap, 4)
    held = (abs(gap) <= cfg.max_gap and metrics["ours_sg_accuracy"] >= bow["all"] + cfg.min_over_bow
            and name_share >= 0.5)
    return Verdict(held=held, metrics=metrics,
                   notes=f"skip-gram analogies: ours {metrics['ours_sg_accuracy']:.1%}, gensim "
                         f"{metrics['gensim_sg_accuracy']:.1%}, bag of words {bow['all']:.1%}; ours trains "
                         f"{metrics['sg_time_ratio']:.1f}× gensim's time")
