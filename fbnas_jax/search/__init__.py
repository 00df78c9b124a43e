"""Architecture search in any search space driven by any objective (pure NumPy)."""
from fbnas_jax.search.algorithms import (
    ReferenceRankObjective,
    SearchError,
    SearchResult,
    evolutionary_search,
    feasible_mask,
    random_search,
)

__all__ = ["ReferenceRankObjective", "SearchError", "SearchResult", "evolutionary_search",
           "feasible_mask", "random_search"]
