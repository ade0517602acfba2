"""The fine-tuning loop end to end on hand-made data, and the `rag finetune` / `rag eval` commands."""

from __future__ import annotations

import json

import pytest

from app.cli import main
from embedder import Embedder
from evaluation.beir import BeirDataset, write_beir
from finetune import run
from finetune.train import TrainConfig
from indexer.jsonl import read_jsonl

TOPICS = {
    "bread": "Knead the dough made of flour, water, salt and yeast, let it rise overnight and bake it in a hot oven until the crust is brown and crisp.",
    "planets": "Jupiter and Saturn are gas giants made mostly of hydrogen and helium, while Uranus and Neptune are ice giants far from the Sun.",
    "violin": "The violin has four strings tuned in fifths and is played with a bow made of horsehair; it is the smallest member of the string family.",
    "volcano": "A volcano erupts when molten rock called magma rises through cracks in the crust and escapes as lava, ash and gas.",
    "chess": "In chess each player starts with sixteen pieces; the goal is to checkmate the opposing king so that it cannot escape capture.",
    "bees": "Honey bees live in colonies with one queen, thousands of female workers and a few male drones, and they make honey from nectar.",
    "python": "Python lists are mutable sequences; append adds an item to the end and pop removes and returns the last item of the list.",
    "coffee": "Coffee beans are the roasted seeds of the coffee plant; espresso is brewed by forcing hot water through finely ground coffee.",
}
GOOD = {
    "bread": [("question", "How long should bread dough rise before baking?"), ("keywords", "bread dough yeast rise"),
              ("claim", "Bread dough is left to rise before it is baked.")],
    "planets": [("question", "Which planets are gas giants?"), ("keywords", "gas giant planets hydrogen"),
                ("claim", "Neptune is an ice giant.")],
    "violin": [("question", "How many strings does a violin have?"), ("keywords", "violin strings bow"),
               ("claim", "The violin is played with a bow.")],
    "volcano": [("question", "What makes a volcano erupt?"), ("keywords", "volcano magma lava eruption"),
                ("claim", "Lava is molten rock from a volcano.")],
    "chess": [("question", "What is the goal of a chess game?"), ("keywords", "chess checkmate king"),
              ("claim", "Chess players try to checkmate the king.")],
    "bees": [("question", "Who lives in a honey bee colony?"), ("keywords", "honey bee colony queen"),
             ("claim", "Bees make honey from nectar.")],
    "python": [("question", "How do I add an item to a Python list?"), ("keywords", "python list append pop"),
               ("claim", "Python lists can be changed in place.")],
    "coffee": [("question", "How is espresso brewed?"), ("keywords", "espresso coffee brewing"),
               ("claim", "Coffee beans are roasted seeds.")],
}
BAD = [
    ("bread", "question", "ok"),                                   # too short
    ("planets", "question", "Here is a query: ???? !!!! ####"),    # artifact + garbage
    ("violin", "question", "How many strings does a violin have?"),  # exact duplicate
    ("chess", "question", "What is the boiling point of espresso coffee?"),  # false positive: about coffee
    ("volcano", "claim", "A volcano erupts when molten rock called magma rises through cracks in the crust"),  # copied
    ("coffee", "claim", "The Eiffel Tower was built for a world's fair."),  # the prompt's own example
]


@pytest.fixture
def workdir(tmp_path):
    rows = [{"_id": pid, "text": text} for pid, text in TOPICS.items()]
    (tmp_path / "passages.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    generated = [{"query": q, "positive_id": pid, "task": task} for pid, qs in GOOD.items() for task, q in qs]
    generated += [{"query": q, "positive_id": pid, "task": task} for pid, task, q in BAD]
    (tmp_path / "generated.jsonl").write_text("".join(json.dumps(r) + "\n" for r in generated))
    return tmp_path


def test_refine_mine_split_train_on_known_data(default_embedder, workdir):
    report = run.step_refine(workdir, default_embedder, top_k=2)
    refined = read_jsonl(workdir / "refined.jsonl")
    queries = {r["query"] for r in refined}
    assert all(q not in queries for _, _, q in BAD[:2] + BAD[3:])
    assert sum(r["query"] == "How many strings does a violin have?" for r in refined) == 1
    steps = report.steps
    assert steps["drop_prompt_copies"]["copied_prompt_example"] == 1
    assert steps["drop_malformed"]["in"] == 30 and steps["drop_malformed"]["in"] - steps["drop_malformed"]["kept"] >= 3
    assert steps["dedupe_queries"]["in"] - steps["dedupe_queries"]["kept"] >= 1
    assert steps["filter_false_positives"]["in"] - steps["filter_false_positives"]["kept"] >= 1
    assert 20 <= len(refined) <= 24
    assert {r["instruction_task"] for r in refined} == {"question_answering", "keyword_search", "fact_checking"}

    assert run.step_mine(workdir, default_embedder, n_negatives=2) == len(refined)
    mined = read_jsonl(workdir / "mined.jsonl")
    assert all(r["positive_id"] not in r["hard_negative_ids"] for r in mined)
    train_n, held_n = run.step_split(workdir, heldout_fraction=0.25)
    train = read_jsonl(workdir / "train.jsonl")
    screened = read_jsonl(workdir / "screened.jsonl")
    assert len(screened) == steps["dedupe_queries"]["kept"]  # before the false-positive filter
    held = {r["positive_id"] for r in screened} - {r["positive_id"] for r in train}
    assert held and not held & {r["positive_id"] for r in train}  # no passage in both splits
    # training: the mined examples of the other passages; held-out: every screened query of the
    # held passages, including false positives the base model's filter removed from training
    # (held-out passages are not used as training negatives either)
    assert train == [{**r, "hard_negative_ids": [n for n in r["hard_negative_ids"] if n not in held]}
                     for r in mined if r["positive_id"] not in held] and len(train) == train_n
    assert held_n == sum(r["positive_id"] in held for r in screened)
    assert json.loads((workdir / "heldout" / "queries.jsonl").read_text().splitlines()[0])["text"] in \
        {r["query"] for r in screened if r["positive_id"] in held}

    # training wraps the embedder's model in place: a fresh one, not the session-wide default_embedder
    card = run.step_train(workdir, Embedder.from_pretrained("default"), workdir / "adapter",
                          TrainConfig(epochs=1, batch_size=4, max_steps=3, temperature=0.05), progress=False)
    assert card["training"]["steps"] == 3
    assert set(card["eval_heldout"]["before"]) == {"ndcg@10", "mrr@10", "recall@10", "recall@100"}
    assert card["eval_heldout"]["before"]["recall@100"] == 1.0  # 8 passages: all retrieved
    significance = card["eval_heldout"]["significance"]
    assert set(significance) == {"ndcg@10", "mrr@10"}
    assert 0 <= significance["ndcg@10"]["p_value"] <= 1 and significance["ndcg@10"]["queries"] == held_n
    readme = (workdir / "adapter" / "README.md").read_text()
    assert readme.count("| ndcg@10 |") == 1 and "p = " in readme
    tuned = Embedder.from_pretrained("default", adapter=str(workdir / "adapter"))
    assert tuned.fingerprint.adapter_id and tuned.fingerprint.key != Embedder.from_pretrained("default").fingerprint.key


def test_steps_name_the_missing_previous_step(default_embedder, tmp_path):
    (tmp_path / "passages.jsonl").write_text(json.dumps({"_id": "a", "text": "x"}) + "\n")
    with pytest.raises(FileNotFoundError, match="rag finetune generate"):
        run.step_refine(tmp_path, default_embedder)
    with pytest.raises(FileNotFoundError, match="rag finetune refine"):
        run.step_mine(tmp_path, default_embedder)


def test_cli_finetune_steps_and_eval(workdir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    assert main(["finetune", "refine", "--workdir", str(workdir), "--top-k", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["refine"]["drop_malformed"]["in"] == 30
    assert main(["finetune", "mine", "--workdir", str(workdir), "--negatives", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mined"] >= 20
    assert main(["finetune", "train", "--workdir", str(workdir), "--batch-size", "4", "--max-steps", "2",
                 "--temperature", "0.05", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (workdir / "adapter" / "training_card.json").exists() and "after" in out["eval"]

    beir = tmp_path / "beir"
    write_beir(beir, BeirDataset(corpus={k: ("", v) for k, v in TOPICS.items()},
                                 queries={"q1": "gas giant planets", "q2": "string instrument played with a bow"},
                                 qrels={"q1": {"planets": 1}, "q2": {"violin": 1}}))
    assert main(["eval", str(beir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metrics"]["ndcg@10"] == pytest.approx(1.0) and result["n_queries"] == 2
    assert main(["eval", str(beir), "--mode", "hybrid"]) == 0
    assert "ndcg@10" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "corpus.jsonl" in capsys.readouterr().err


def test_work_folder_names_the_step_that_writes_a_missing_file(tmp_path):
    from finetune.workfolder import WorkFolder

    folder = WorkFolder(tmp_path / "w")
    with pytest.raises(FileNotFoundError, match="run `rag finetune mine` first"):
        folder.read("mined")
    with pytest.raises(FileNotFoundError, match="rag finetune train"):
        folder.need_heldout()
    folder.write("passages", [{"_id": "a", "text": "alpha", "page": "p1"}, {"_id": "b", "text": "beta"}])
    assert folder.passages() == {"a": "alpha", "b": "beta"}
    assert folder.pages() == {"a": "p1", "b": "b"}  # a passage without a page is its own page
    assert folder.update_report("split", {"train": 1}) == {"split": {"train": 1}}
    assert folder.update_report("mine", {}) == {"split": {"train": 1}, "mine": {}} == folder.report()
    with pytest.raises(KeyError, match="not a work-folder file"):
        folder.file("notes")


def test_sampled_passages_are_the_text_the_collection_embedded(default_embedder, tmp_path):
    from indexer.pipeline import Indexer, IndexSettings
    from indexer.store import EdgeStore

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.md").write_text("# Garden notes\n\n" + "Tomatoes need sun, water and stakes to climb. " * 6)
    with EdgeStore(tmp_path / "store") as store:
        Indexer(default_embedder, store, "docs", IndexSettings(chunk_tokens=64, chunk_overlap=8)).run(
            [folder], progress=False)
        assert run.step_sample(tmp_path / "w", store, "docs", 10) >= 1
        texts = {p["page_content"] for _, p in store.iter_payloads("docs", ["page_content"])}
        passages = {p["text"] for p in read_jsonl(tmp_path / "w" / "passages.jsonl")}
        assert passages and passages <= {f"Garden notes {t}" for t in texts}  # after the title, as embedded
        store.update_collection_meta("docs", {"chunk_context": "none"})  # a collection from before titles
        run.step_sample(tmp_path / "w2", store, "docs", 10)
        assert {p["text"] for p in read_jsonl(tmp_path / "w2" / "passages.jsonl")} <= texts
