"""Task instructions for instruction-tuned embedders (E5-Mistral / Linq-Embed-Mistral).

Queries carry a one-sentence task description, documents carry none::

    Instruct: Given a web search query, retrieve relevant passages that answer the query
    Query: how do I rotate a PDF page

The registry holds the instructions the E5-Mistral paper used for common retrieval tasks;
any other text is accepted as a custom instruction.
"""

from __future__ import annotations

TASKS: dict[str, str] = {
    "web_search": "Given a web search query, retrieve relevant passages that answer the query",
    "question_answering": "Given a question, retrieve passages that answer the question",
    "fact_checking": "Given a claim, retrieve documents that support or refute the claim",
    "code_search": "Given a natural language query, retrieve relevant code snippets or documentation",
    "duplicate_detection": (
        "Given a question, retrieve questions that are semantically equivalent to the given question"
    ),
    "keyword_search": "Given a list of keywords, retrieve passages that discuss all of them",
    "summary_lookup": "Given a summary, retrieve the document it summarises",
    "title_lookup": "Given a title or heading, retrieve the section or page it heads",
}

DEFAULT_TASK = "web_search"


def resolve_instruction(task: str | None = None, instruction: str | None = None) -> str:
    """Return the instruction text for a named ``task`` or a free-text ``instruction``.

    A custom ``instruction`` wins over ``task``. With neither, the default task is used.

    Raises:
        ValueError: ``task`` is not a registered name.
    """
    if instruction is not None and instruction.strip():
        return instruction.strip()
    name = task or DEFAULT_TASK
    if name not in TASKS:
        raise ValueError(
            f"Unknown task {name!r}. Valid tasks: {', '.join(sorted(TASKS))}; "
            "or pass a custom instruction text instead (--instruction)."
        )
    return TASKS[name]


def format_instructed_query(instruction: str, query: str) -> str:
    """Format a query the way E5-Mistral was trained: ``Instruct: {task}\\nQuery: {query}``."""
    return f"Instruct: {instruction}\nQuery: {query}"
