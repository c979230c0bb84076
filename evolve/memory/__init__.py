"""The memory system being tuned (units, retrievers, fusion, packing, answerers)."""
