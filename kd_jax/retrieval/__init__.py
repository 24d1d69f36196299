"""Retrieval for ReAugKD: a teacher knowledge base with ScaNN and exact JAX search backends."""

from kd_jax.retrieval.knowledge_base import (
    KnowledgeBase,
    KnowledgeBaseError,
    build_knowledge_base,
    load_knowledge_base,
    save_knowledge_base,
)
from kd_jax.retrieval.search import (
    ExactSearcher,
    ScannParams,
    ScannSearcher,
    exact_top_k,
    recall_at_k,
)

__all__ = [
    "ExactSearcher",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "ScannParams",
    "ScannSearcher",
    "build_knowledge_base",
    "exact_top_k",
    "load_knowledge_base",
    "recall_at_k",
    "save_knowledge_base",
]
