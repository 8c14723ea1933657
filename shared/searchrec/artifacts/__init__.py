"""The artifacts the stages hand each other: one module per artifact type, each owning its files and columns.

| module | artifact | written by | read by |
| --- | --- | --- | --- |
| ``events`` | events / orders Datasets (``part-NNNNN.parquet``) | extract | clean |
| ``snapshot`` | the embeddings snapshot Dataset (copy of a ``dt=`` partition + ``snapshot.json``) | extract | clean, train, index |
| ``examples`` | examples / histories Datasets (per-split parquet, items, funnel) | clean | encode, train |
| ``encoded`` | encoded queries Dataset (table + per-split history indices) | encode | train, index, infer |
| ``model`` | the trained two-tower Model folder | train | index, infer |
| ``index`` | faiss index Artifact | index | infer |
| ``recommendations`` | recommendations Dataset (+ serving stats) | infer | merge, users |
| ``report`` | the HTML report | train | people |

Every folder is published the one way of :mod:`searchrec.artifacts.folder` (in place, completion
marker last, never a directory rename) and every reader checks that marker first. Submodules are not
imported here: the CPU images import only the ones they need (none of them pulls torch or faiss).
"""
